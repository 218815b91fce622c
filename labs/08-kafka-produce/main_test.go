package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labtest"
)

func TestMain(m *testing.M) { brokertest.Main(m) }

// record is what the test's own consumer found on the topic.
type record struct {
	id        string // the booking ID inside the envelope
	eventID   string // the event ID inside the envelope
	key       string
	partition int32
	offset    int64
}

// TestProduce runs the lab with -keep and then reads the whole topic with a
// consumer of its own: every booking is there exactly once, a key always
// maps to one partition, the offsets the program printed are the ones on the
// topic, and the topic has the partition count asked for.
func TestProduce(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	topic := brokertest.Name(t, "events")
	t.Cleanup(func() { deleteTopic(t, kafka.Brokers, topic) })
	const n = 500

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	brokers := strings.Join(kafka.Brokers, ",")
	if err := run(ctx, []string{"-brokers", brokers, "-topic", topic, "-n", strconv.Itoa(n), "-keep"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	kept := fmt.Sprintf("\nkept topic %s (-keep): the next run appends to it and leaves it in place\n", topic)
	if !strings.HasSuffix(out.String(), kept) {
		t.Errorf("the output of a run with -keep does not end with %q:\n%s", kept, out.String())
	}

	// The partition count of the created topic is the default, 4.
	records, partitions := consumeAll(t, kafka.Brokers, topic)
	if partitions != 4 {
		t.Errorf("topic %s has %d partitions, want 4", topic, partitions)
	}

	// Every booking reached the topic exactly once.
	var want []string
	for i := range 2 * len(demoKeys) {
		want = append(want, fmt.Sprintf("demo-%d", i+1))
	}
	for i := range n {
		want = append(want, fmt.Sprintf("sync-%06d", i), fmt.Sprintf("async-%06d", i))
	}
	var got []string
	for _, r := range records {
		got = append(got, r.id)
	}
	brokertest.CheckIDs(t, "records on the topic", got, want)

	// Every record is keyed by its event ID, and the same key always
	// landed on the same partition. A forgotten key gets it wrong for
	// every record: report the first few and a count, not a line each.
	partitionOf := map[string]int32{}
	var wrongKeys, split []string
	for _, r := range records {
		if r.key != r.eventID {
			wrongKeys = append(wrongKeys, fmt.Sprintf("%s (event %s) at partition %d offset %d has key %q", r.id, r.eventID, r.partition, r.offset, r.key))
		}
		if p, seen := partitionOf[r.key]; seen && p != r.partition {
			split = append(split, fmt.Sprintf("%s (key %q) on partition %d, an earlier record of that key on %d", r.id, r.key, r.partition, p))
		}
		partitionOf[r.key] = r.partition
	}
	if len(wrongKeys) > 0 {
		t.Errorf("%d of %d records are not keyed by their event ID: %s", len(wrongKeys), len(records), shorten(wrongKeys))
	}
	if len(split) > 0 {
		t.Errorf("%d records are on another partition than an earlier record with the same key: %s", len(split), shorten(split))
	}

	// The partition and offset printed for each demo booking are where the
	// consumer found it.
	at := map[[2]int64]record{}
	for _, r := range records {
		at[[2]int64{int64(r.partition), r.offset}] = r
	}
	printed := regexp.MustCompile(`(?m)^  (\S+)\s+-> partition (\d+), offset (\d+)$`).FindAllStringSubmatch(out.String(), -1)
	if len(printed) != 2*len(demoKeys) {
		t.Fatalf("the program printed %d partition/offset lines, want %d", len(printed), 2*len(demoKeys))
	}
	for i, m := range printed {
		partition, _ := strconv.ParseInt(m[2], 10, 32)
		offset, _ := strconv.ParseInt(m[3], 10, 64)
		r, ok := at[[2]int64{partition, offset}]
		wantID := fmt.Sprintf("demo-%d", i+1)
		switch {
		case !ok:
			t.Errorf("printed partition %d offset %d for %s, but the consumer found nothing there", partition, offset, wantID)
		case r.id != wantID || r.key != m[1]:
			t.Errorf("printed %s (key %q) at partition %d offset %d, but the consumer found %s (key %q) there",
				wantID, m[1], partition, offset, r.id, r.key)
		}
	}
}

// TestCleanup runs the lab without -keep: its output is the docs' block, and
// afterwards the topic is gone.
func TestCleanup(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	topic := brokertest.Name(t, "events")
	t.Cleanup(func() { deleteTopic(t, kafka.Brokers, topic) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	brokers := strings.Join(kafka.Brokers, ",")
	if err := run(ctx, []string{"-brokers", brokers, "-topic", topic, "-n", "200"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	labtest.CheckOutput(t, out.String(), []string{"README.md", "../../docs/08-kafka-produce.md"},
		topic, "lab08.events", brokers, "127.0.0.1:9092")
	waitTopicGone(t, kafka.Brokers, topic, "after a run without -keep")
}

// TestExistingTopicAndRerun pre-creates the topic with 3 partitions: the
// program keeps it as it is, says 3, and a second run with -keep prints the
// same lines as the first with only the offsets grown. A last run without
// -keep leaves it in place with everything on it: the run did not create
// it, and a lab deletes only what it made.
func TestExistingTopicAndRerun(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	topic := brokertest.Name(t, "events")
	createTopic(t, kafka.Brokers, topic, 3)
	t.Cleanup(func() { deleteTopic(t, kafka.Brokers, topic) })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	number := regexp.MustCompile(`[0-9]+(\.[0-9]+)?`)
	var shapes []string
	for range 2 {
		var out bytes.Buffer
		if err := run(ctx, []string{"-brokers", strings.Join(kafka.Brokers, ","), "-topic", topic, "-n", "50", "-keep"}, &out); err != nil {
			t.Fatalf("run: %v\n%s", err, out.String())
		}
		if !strings.Contains(out.String(), "topic "+topic+": 3 partitions\n") {
			t.Errorf("the program did not report the existing 3 partitions:\n%s", out.String())
		}
		shapes = append(shapes, number.ReplaceAllString(out.String(), "N"))
	}
	if shapes[0] != shapes[1] {
		t.Errorf("the rerun printed different lines:\n--- first ---\n%s--- second ---\n%s", shapes[0], shapes[1])
	}
	records, partitions := consumeAll(t, kafka.Brokers, topic)
	if partitions != 3 {
		t.Errorf("topic has %d partitions after the runs, want the 3 it was created with", partitions)
	}
	if want := 2 * (2*len(demoKeys) + 2*50); len(records) != want {
		t.Errorf("the topic holds %d records after two runs with -keep, want %d", len(records), want)
	}
	var out bytes.Buffer
	if err := run(ctx, []string{"-brokers", strings.Join(kafka.Brokers, ","), "-topic", topic, "-n", "10"}, &out); err != nil {
		t.Fatalf("run without -keep: %v\n%s", err, out.String())
	}
	left := fmt.Sprintf("\nleft topic %s in place: it existed before this run, which deletes only a topic it created\n", topic)
	if !strings.HasSuffix(out.String(), left) {
		t.Errorf("the output of a run without -keep on an existing topic does not end with %q:\n%s", left, out.String())
	}
	records, _ = consumeAll(t, kafka.Brokers, topic)
	if want := 2*(2*len(demoKeys)+2*50) + 2*len(demoKeys) + 2*10; len(records) != want {
		t.Errorf("after a run without -keep the existing topic holds %d records, want all %d written to it", len(records), want)
	}
}

// TestUnreachableBroker checks that a Kafka that is not there gives one
// sentence naming the brokers and saying how to start one.
func TestUnreachableBroker(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		brokers string
		want    []string
	}{
		{"closed port", "127.0.0.1:1", []string{"connecting to Kafka at 127.0.0.1:1: no broker answers (", "go run ./labs/00-setup -embedded-kafka"}},
		{"two closed ports", "127.0.0.1:1,127.0.0.1:2", []string{"connecting to Kafka at 127.0.0.1:1,127.0.0.1:2: no broker answers (", "-brokers or KAFKA_BROKERS"}},
		{"empty list", " , ", []string{"no Kafka broker given"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var out bytes.Buffer
			err := run(ctx, []string{"-brokers", tc.brokers, "-topic", brokertest.Name(t, "events")}, &out)
			if err == nil {
				t.Fatal("run succeeded against a broker that is not there")
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if strings.Contains(msg, "\n") || strings.Contains(msg, "run out of available brokers") {
				t.Errorf("error is not one clear sentence: %q", msg)
			}
			if out.Len() > 0 {
				t.Errorf("printed %q before failing", out.String())
			}
		})
	}
}

// TestInterrupt cancels the context as Ctrl-C does, once the demo has
// started: run returns the cancellation (main then exits 130) before the
// throughput runs are through, and has deleted the topic.
func TestInterrupt(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	topic := brokertest.Name(t, "events")
	t.Cleanup(func() { deleteTopic(t, kafka.Brokers, topic) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := &labtest.CancelOn{Marker: "SyncProducer, one booking at a time", Cancel: cancel}
	err := run(ctx, []string{"-brokers", strings.Join(kafka.Brokers, ","), "-topic", topic, "-n", "100000"}, out)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run = %v, want the cancellation\noutput:\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "throughput") {
		t.Errorf("the interrupted run went on to the throughput lines:\n%s", out.String())
	}
	waitTopicGone(t, kafka.Brokers, topic, "after the interrupted run")
}

// TestInterruptLeavesAnExistingTopic: Ctrl-C in a run on a topic that
// existed before it leaves the topic and what was on it.
func TestInterruptLeavesAnExistingTopic(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	topic := brokertest.Name(t, "events")
	createTopic(t, kafka.Brokers, topic, 3)
	t.Cleanup(func() { deleteTopic(t, kafka.Brokers, topic) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := &labtest.CancelOn{Marker: "SyncProducer, one booking at a time", Cancel: cancel}
	err := run(ctx, []string{"-brokers", strings.Join(kafka.Brokers, ","), "-topic", topic, "-n", "100000"}, out)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run = %v, want the cancellation\noutput:\n%s", err, out.String())
	}
	admin := newAdmin(t, kafka.Brokers)
	defer admin.Close()
	topics, err := admin.ListTopics()
	if err != nil {
		t.Fatalf("listing topics: %v", err)
	}
	if _, ok := topics[topic]; !ok {
		t.Errorf("the interrupted run deleted topic %s, which existed before it", topic)
	}
}

// BenchmarkProducers measures both producers in the same run, one booking
// each per iteration, and reports their rates and the ratio.
func BenchmarkProducers(b *testing.B) {
	kafka := brokertest.Kafka(b)
	topic := brokertest.Name(b, "events")
	createTopic(b, kafka.Brokers, topic, 4)
	b.Cleanup(func() { deleteTopic(b, kafka.Brokers, topic) })

	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Idempotent = true
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.Return.Successes = true
	client, err := sarama.NewClient(kafka.Brokers, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	syncProducer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		b.Fatal(err)
	}
	defer syncProducer.Close()
	asyncProducer, err := sarama.NewAsyncProducerFromClient(client)
	if err != nil {
		b.Fatal(err)
	}
	defer asyncProducer.Close()

	ctx := context.Background()
	b.ResetTimer()
	syncElapsed, err := produceSync(ctx, syncProducer, topic, "sync", b.N)
	if err != nil {
		b.Fatal(err)
	}
	asyncElapsed, err := produceAsync(ctx, asyncProducer, topic, "async", b.N)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	syncRate := float64(b.N) / syncElapsed.Seconds()
	asyncRate := float64(b.N) / asyncElapsed.Seconds()
	b.ReportMetric(syncRate, "sync-msg/s")
	b.ReportMetric(asyncRate, "async-msg/s")
	b.ReportMetric(asyncRate/syncRate, "async/sync")
}

// consumeAll reads every record of every partition of the topic, from the
// oldest to the high-water mark, and returns them with the partition count.
func consumeAll(t testing.TB, brokers []string, topic string) ([]record, int) {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	client, err := sarama.NewClient(brokers, cfg)
	if err != nil {
		t.Fatalf("test consumer: %v", err)
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatalf("test consumer: %v", err)
	}
	defer consumer.Close()
	if err := client.RefreshMetadata(topic); err != nil {
		t.Fatalf("test consumer: metadata of %s: %v", topic, err)
	}
	partitions, err := client.Partitions(topic)
	if err != nil {
		t.Fatalf("test consumer: partitions of %s: %v", topic, err)
	}
	var records []record
	for _, p := range partitions {
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatalf("test consumer: high-water mark of partition %d: %v", p, err)
		}
		start, err := client.GetOffset(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("test consumer: oldest offset of partition %d: %v", p, err)
		}
		if start == end {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("test consumer: partition %d: %v", p, err)
		}
		deadline := time.After(30 * time.Second)
		for next := start; next < end; {
			select {
			case m := <-pc.Messages():
				_, ev, err := contracts.Unwrap(m.Value)
				if err != nil {
					t.Fatalf("partition %d offset %d: %v", p, m.Offset, err)
				}
				booked, ok := ev.(*contracts.EventBooked)
				if !ok {
					t.Fatalf("partition %d offset %d: got %T, want *contracts.EventBooked", p, m.Offset, ev)
				}
				records = append(records, record{id: booked.ID, eventID: booked.EventID, key: string(m.Key), partition: p, offset: m.Offset})
				next = m.Offset + 1
			case <-deadline:
				t.Fatalf("test consumer: partition %d stopped at offset %d of %d", p, next, end)
			}
		}
		pc.Close()
	}
	return records, len(partitions)
}

// createTopic creates a topic for a test.
func createTopic(t testing.TB, brokers []string, topic string, partitions int32) {
	t.Helper()
	admin := newAdmin(t, brokers)
	defer admin.Close()
	err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: -1}, false)
	if err != nil {
		t.Fatalf("creating topic %s: %v", topic, err)
	}
}

// deleteTopic removes a topic a test made, unless the lab already did.
func deleteTopic(t testing.TB, brokers []string, topic string) {
	t.Helper()
	admin := newAdmin(t, brokers)
	defer admin.Close()
	if err := admin.DeleteTopic(topic); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		t.Errorf("deleting topic %s: %v", topic, err)
	}
}

// waitTopicGone asks the cluster, with an admin of the test's own, until
// the topic is no longer listed (Apache Kafka deletes in the background), and
// fails the test if it still is after ten seconds.
func waitTopicGone(t testing.TB, brokers []string, topic, when string) {
	t.Helper()
	admin := newAdmin(t, brokers)
	defer admin.Close()
	brokertest.Eventually(t, 10*time.Second, func() error {
		topics, err := admin.ListTopics()
		if err != nil {
			return fmt.Errorf("listing topics: %w", err)
		}
		if _, ok := topics[topic]; ok {
			return fmt.Errorf("topic %s still exists %s", topic, when)
		}
		return nil
	})
}

func newAdmin(t testing.TB, brokers []string) sarama.ClusterAdmin {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	admin, err := sarama.NewClusterAdmin(brokers, cfg)
	if err != nil {
		t.Fatalf("cluster admin: %v", err)
	}
	return admin
}
