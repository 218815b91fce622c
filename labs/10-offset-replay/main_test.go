package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labtest"
)

func TestMain(m *testing.M) { brokertest.Main(m) }

// ownClient opens a client of our own, independent of the program. Its
// producer puts each record on the partition the message names.
func ownClient(t *testing.T, brokers []string) (sarama.Client, sarama.ClusterAdmin) {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Producer.Return.Successes = true
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.MaxWaitTime = 50 * time.Millisecond
	client, err := sarama.NewClient(brokers, cfg)
	if err != nil {
		t.Fatalf("connecting to Kafka: %v", err)
	}
	t.Cleanup(func() { _ = client.Close() })
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatalf("admin: %v", err)
	}
	return client, admin
}

// newTopic creates a topic with the lab's partition count for one test.
func newTopic(t *testing.T, client sarama.Client, admin sarama.ClusterAdmin) string {
	t.Helper()
	topic := brokertest.Name(t, "lab10")
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: -1}, false); err != nil {
		t.Fatalf("creating topic %s: %v", topic, err)
	}
	t.Cleanup(func() { _ = admin.DeleteTopic(topic) })
	if err := client.RefreshMetadata(topic); err != nil {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	return topic
}

// produced is what a test wrote: booking ID -> partition and offset.
type produced map[string]record

// produce writes n bookings per partition, each with its own timestamp,
// and returns where each landed and the seats booked per event.
func produce(t *testing.T, client sarama.Client, topic string, perPartition map[int32]int) (produced, state) {
	t.Helper()
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	defer producer.Close()
	out, seats := produced{}, state{}
	i := 0
	for _, p := range slices.Sorted(maps.Keys(perPartition)) {
		for range perPartition[p] {
			i++
			b := &contracts.EventBooked{ID: fmt.Sprintf("bk-%03d", i), EventID: fmt.Sprintf("ev-p%d", p), Seats: 1 + i%4,
				Date: day.Add(time.Duration(i) * time.Minute)}
			value, err := contracts.Wrap(b)
			if err != nil {
				t.Fatal(err)
			}
			gotP, off, err := producer.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: p,
				Key: sarama.StringEncoder(b.EventID), Value: sarama.ByteEncoder(value), Timestamp: b.Date})
			if err != nil {
				t.Fatalf("producing %s: %v", b.ID, err)
			}
			out[b.ID] = record{partition: gotP, offset: off, at: b.Date, id: b.ID}
			seats[b.EventID] += b.Seats
		}
	}
	return out, seats
}

// ids returns the sorted booking IDs of records.
func ids(rs []record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.id)
	}
	slices.Sort(out)
	return out
}

// diff reports missing and extra IDs; an ID processed twice is extra.
func diff(t *testing.T, what string, got []record, want []string) {
	t.Helper()
	brokertest.CheckIDs(t, what, ids(got), want)
}

// split returns the IDs of the records below offset limit and those at or
// above it; with limit < 0, before holds them all.
func (p produced) split(limit int64) (before, after []string) {
	for id, r := range p {
		if limit >= 0 && r.offset >= limit {
			after = append(after, id)
		} else {
			before = append(before, id)
		}
	}
	slices.Sort(before)
	slices.Sort(after)
	return before, after
}

// TestRunMatchesDocs runs the lab, checks its output against the README and
// the chapter, numbers included, and then asks the broker with its own
// client what the run left: committed offsets, log start and end, record
// timestamps and the topic's retention.
func TestRunMatchesDocs(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	topic := brokertest.Name(t, "lab10")
	group := brokertest.Name(t, "lab10-group")
	client, admin := ownClient(t, kafka.Brokers)
	t.Cleanup(func() {
		_ = admin.DeleteConsumerGroup(group)
		_ = admin.DeleteTopic(topic)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var buf bytes.Buffer
	brokers := strings.Join(kafka.Brokers, ",")
	if err := run(ctx, []string{"-brokers", brokers, "-topic", topic, "-group", group, "-keep"}, &buf); err != nil {
		t.Fatalf("run: %v\n%s", err, buf.String())
	}
	replacements := []string{topic, "lab10.bookings", group, "lab10.projector", brokers, "127.0.0.1:9092"}
	docs := []string{"README.md", "../../docs/10-offset-replay.md"}
	labtest.CheckOutput(t, buf.String(), docs, replacements...)

	// The numbers are the lesson here, so the output must match the README
	// exactly, numbers included, not only with numbers as wildcards.
	want, err := labtest.ExpectedOutput("README.md")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.NewReplacer(replacements...).Replace(buf.String())
	if g, w := strings.TrimRight(got, "\n"), strings.Join(want, "\n"); g != w {
		t.Errorf("the output differs from README.md in its numbers:\n--- got\n%s\n--- want\n%s", g, w)
	}

	// What the broker holds, read with our own client.
	committed, err := committedOffsets(admin, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	if w := map[int32]int64{0: 4, 1: 4}; !maps.Equal(committed, w) {
		t.Errorf("group %s committed %v, want %v (member 2 processed everything)", group, committed, w)
	}
	for p, want := range map[int32][2]int64{0: {2, 4}, 1: {0, 4}} {
		oldest, err1 := client.GetOffset(topic, p, sarama.OffsetOldest)
		newest, err2 := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		if oldest != want[0] || newest != want[1] {
			t.Errorf("partition %d spans offsets %d..%d, want %d..%d", p, oldest, newest, want[0], want[1])
		}
	}
	// Every surviving record carries the timestamp the program gave it.
	res, err := replay(ctx, client, topic)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "records left after DeleteRecords", res.records, []string{"bk-2", "bk-4", "bk-5", "bk-6", "bk-7", "bk-8"})
	for _, r := range res.records {
		if b := bookingByID(r.id); !r.at.Equal(b.Date) {
			t.Errorf("%s has timestamp %v, want %v", r.id, r.at, b.Date)
		}
	}
	configs, err := admin.DescribeConfigs([]*sarama.ConfigResource{{Type: sarama.TopicResource, Name: topic,
		ConfigNames: []string{"retention.ms"}}}, sarama.DescribeConfigsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(configs) != 1 || len(configs[0].Configs) != 1 || configs[0].Configs[0].Value != "-1" {
		t.Errorf("retention.ms of %s = %+v, want -1", topic, configs)
	}
}

// bookingByID finds one of the lab's bookings.
func bookingByID(id string) *contracts.EventBooked {
	for _, b := range bookings() {
		if b.ID == id {
			return b
		}
	}
	return &contracts.EventBooked{}
}

// TestReplayCountsEveryRecord checks that a replay from the oldest offset
// processes exactly what was produced, and rebuilds the same state.
func TestReplayCountsEveryRecord(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	client, admin := ownClient(t, kafka.Brokers)
	topic := newTopic(t, client, admin)
	want, seats := produce(t, client, topic, map[int32]int{0: 13, 1: 7})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := replay(ctx, client, topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.records) != len(want) {
		t.Errorf("replayed %d records, produced %d", len(res.records), len(want))
	}
	all, _ := want.split(-1)
	diff(t, "replay", res.records, all)
	for _, r := range res.records {
		if w := want[r.id]; w.partition != r.partition || w.offset != r.offset {
			t.Errorf("%s read at %d/%d, produced at %d/%d", r.id, r.partition, r.offset, w.partition, w.offset)
		}
	}
	if !maps.Equal(res.state, seats) {
		t.Errorf("replayed state %v, want %v", res.state, seats)
	}
}

// TestGroupResumesAfterLastProcessed stops a group member part-way and
// restarts it: the new member starts at the committed offsets and
// processes exactly the rest; a third member finds nothing left.
func TestGroupResumesAfterLastProcessed(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	client, admin := ownClient(t, kafka.Brokers)
	topic := newTopic(t, client, admin)
	group := brokertest.Name(t, "lab10-group")
	t.Cleanup(func() { _ = admin.DeleteConsumerGroup(group) })
	want, _ := produce(t, client, topic, map[int32]int{0: 9, 1: 6})
	end, err := endOffsets(client, topic)
	if err != nil {
		t.Fatal(err)
	}
	const stop = 4
	before, after := want.split(stop)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	first, err := runGroupMember(ctx, kafka.Brokers, group, topic, stopOffsets(end, stop))
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "member 1", first.records, before)
	committed, err := committedOffsets(admin, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	if w := map[int32]int64{0: stop, 1: stop}; !maps.Equal(committed, w) {
		t.Fatalf("after member 1 the group committed %v, want %v", committed, w)
	}

	second, err := runGroupMember(ctx, kafka.Brokers, group, topic, end)
	if err != nil {
		t.Fatal(err)
	}
	if w := map[int32]int64{0: stop, 1: stop}; !maps.Equal(second.startedAt, w) {
		t.Errorf("member 2 started at %v, want %v", second.startedAt, w)
	}
	diff(t, "member 2", second.records, after)
	all, _ := want.split(-1)
	diff(t, "members 1 and 2 together", append(slices.Clone(first.records), second.records...), all)

	third, err := runGroupMember(ctx, kafka.Brokers, group, topic, end)
	if err != nil {
		t.Fatal(err)
	}
	if len(third.records) != 0 || !maps.Equal(third.startedAt, end) {
		t.Errorf("member 3 started at %v (end %v) and processed %v, want nothing", third.startedAt, end, ids(third.records))
	}
}

// TestGroupDoesNotCommitAFailedRecord puts a record that does not decode
// at partition 0 offset 0: the member must stop with the processing error
// and leave that record unmarked, so the group's committed offset of
// partition 0 stays where it was (nothing committed), and a restarted
// member meets the record again instead of skipping it.
func TestGroupDoesNotCommitAFailedRecord(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	client, admin := ownClient(t, kafka.Brokers)
	topic := newTopic(t, client, admin)
	group := brokertest.Name(t, "lab10-group")
	t.Cleanup(func() { _ = admin.DeleteConsumerGroup(group) })
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	if _, off, err := producer.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: 0, Value: sarama.StringEncoder("not an envelope")}); err != nil || off != 0 {
		t.Fatalf("producing the broken record: offset %d, %v", off, err)
	}
	produce(t, client, topic, map[int32]int{0: 2, 1: 2})
	end, err := endOffsets(client, topic)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	for _, member := range []string{"member 1", "member 2, a restart,"} {
		res, err := runGroupMember(ctx, kafka.Brokers, group, topic, end)
		if err == nil {
			t.Errorf("%s processed %v and returned no error; the record at partition 0 offset 0 does not decode", member, res.records)
		} else if !strings.Contains(err.Error(), "/0 offset 0") {
			t.Errorf("%s failed with %q, want the processing error of partition 0 offset 0", member, err)
		}
		committed, err := committedOffsets(admin, group, topic)
		if err != nil {
			t.Fatal(err)
		}
		if off, ok := committed[0]; ok && off != -1 {
			t.Fatalf("after %s failed to process partition 0 offset 0, the group committed p0=%d; want nothing committed: mark a record only after processing it", member, off)
		}
	}
}

// TestOffsetZeroAfterDeleteRecords: once the start of the log is gone,
// offset 0 is out of range, a stored offset below the new start too, and
// OffsetOldest starts at the first surviving record.
func TestOffsetZeroAfterDeleteRecords(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	client, admin := ownClient(t, kafka.Brokers)
	topic := newTopic(t, client, admin)
	want, _ := produce(t, client, topic, map[int32]int{0: 6, 1: 2})
	const cut = 4
	if err := admin.DeleteRecords(topic, map[int32]int64{0: cut}); err != nil {
		t.Fatalf("DeleteRecords: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	if _, err := firstRecord(ctx, client, topic, 0, 0); !errors.Is(err, sarama.ErrOffsetOutOfRange) {
		t.Errorf("offset 0 after DeleteRecords: %v, want ErrOffsetOutOfRange", err)
	}
	r, err := firstRecord(ctx, client, topic, 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatalf("OffsetOldest: %v", err)
	}
	if r.offset != cut || want[r.id].offset != cut {
		t.Errorf("OffsetOldest gave %s at offset %d, want the record produced at offset %d", r.id, r.offset, cut)
	}
	if oldest, err := client.GetOffset(topic, 0, sarama.OffsetOldest); err != nil || oldest != cut {
		t.Errorf("oldest offset = %d, %v; want %d", oldest, err, cut)
	}
	// The untouched partition still starts at 0.
	if r, err := firstRecord(ctx, client, topic, 1, 0); err != nil || r.offset != 0 {
		t.Errorf("partition 1 from offset 0: %+v, %v", r, err)
	}
	// A self-stored position below the new start fails the same way.
	path := filepath.Join(t.TempDir(), "checkpoint.json")
	if err := saveCheckpoint(path, checkpoint{Seats: state{}, Next: map[int32]int64{0: 1, 1: 0}}); err != nil {
		t.Fatal(err)
	}
	end, err := endOffsets(client, topic)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := runSelfStored(ctx, client, topic, path, end); !errors.Is(err, sarama.ErrOffsetOutOfRange) {
		t.Errorf("resuming below the log start: %v, want ErrOffsetOutOfRange", err)
	}
	// A replay from the oldest offset reads what is left.
	res, err := replay(ctx, client, topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.records) != 6-cut+2 {
		t.Errorf("replay after DeleteRecords read %d records, want %d", len(res.records), 6-cut+2)
	}
}

// TestOffsetForTimestamp checks GetOffset(timestamp) against the records
// themselves: the first offset whose timestamp is at or after the time.
func TestOffsetForTimestamp(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	client, admin := ownClient(t, kafka.Brokers)
	topic := newTopic(t, client, admin)
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	t0 := day.Add(9 * time.Hour)
	minutes := []int{0, 10, 20, 20, 30} // two records share a timestamp
	for i, m := range minutes {
		b := &contracts.EventBooked{ID: fmt.Sprintf("bk-%d", i), EventID: "ev-1", Seats: 1, Date: t0.Add(time.Duration(m) * time.Minute)}
		value, err := contracts.Wrap(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := producer.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: 0,
			Value: sarama.ByteEncoder(value), Timestamp: b.Date}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		minute float64
		want   int64
	}{{-1, 0}, {0, 0}, {5, 1}, {10, 1}, {15, 2}, {20, 2}, {25, 4}, {30, 4}, {30.5, -1}, {600, -1}} {
		at := t0.Add(time.Duration(tc.minute * float64(time.Minute)))
		got, err := offsetsForTime(client, topic, at)
		if err != nil {
			t.Fatal(err)
		}
		if got[0] != tc.want {
			t.Errorf("offset for %s (+%vm) = %d, want %d", at.Format(time.TimeOnly), tc.minute, got[0], tc.want)
		}
		if got[1] != -1 {
			t.Errorf("empty partition 1: offset for +%vm = %d, want -1", tc.minute, got[1])
		}
		// Cross-check with the records: the one found is at or after the
		// time, the one before it is earlier.
		if got[0] >= 0 {
			if m := minutes[got[0]]; float64(m) < tc.minute {
				t.Errorf("+%vm: offset %d has minute %d, before the time", tc.minute, got[0], m)
			}
			if got[0] > 0 && float64(minutes[got[0]-1]) >= tc.minute {
				t.Errorf("+%vm: offset %d is not the first at or after the time", tc.minute, got[0])
			}
		}
	}
}

// TestInterruptDeletesTopicAndGroup cancels the context as Ctrl-C does,
// when part 2a begins: run returns the cancellation (main then exits 130),
// its group member has left, and the topic and the group are gone.
func TestInterruptDeletesTopicAndGroup(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	topic := brokertest.Name(t, "lab10")
	group := brokertest.Name(t, "lab10-group")
	_, admin := ownClient(t, kafka.Brokers)
	t.Cleanup(func() {
		_ = admin.DeleteConsumerGroup(group)
		_ = admin.DeleteTopic(topic)
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := &labtest.CancelOn{Marker: "2a. consumer group", Cancel: cancel}
	err := run(ctx, []string{"-brokers", strings.Join(kafka.Brokers, ","), "-topic", topic, "-group", group}, out)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run = %v, want the cancellation\noutput:\n%s", err, out.String())
	}
	topics, err := admin.ListTopics()
	if err != nil {
		t.Fatalf("listing topics: %v", err)
	}
	if _, ok := topics[topic]; ok {
		t.Errorf("topic %s is still there after the interrupted run", topic)
	}
	groups, err := admin.ListConsumerGroups()
	if err != nil {
		t.Fatalf("listing groups: %v", err)
	}
	if _, ok := groups[group]; ok {
		t.Errorf("group %s is still there after the interrupted run", group)
	}
}

// TestBrokerErrors checks that a Kafka that is not there, or no broker at
// all, gives one clear sentence that says how to start one.
func TestBrokerErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, brokers, want string
	}{
		{"nothing listens", "127.0.0.1:1", "connecting to Kafka at 127.0.0.1:1: no broker answers"},
		{"two brokers", "127.0.0.1:1,127.0.0.1:2", "connecting to Kafka at 127.0.0.1:1,127.0.0.1:2: no broker answers"},
		{"no port", "localhost", "no broker answers"},
		{"empty list", ",", "no Kafka broker given"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			err := run(context.Background(), []string{"-brokers", tc.brokers}, &buf)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run = %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(tc.want, "no broker answers") && !strings.Contains(err.Error(), "-embedded-kafka") {
				t.Errorf("the error does not say how to start a Kafka: %v", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("the error spans several lines: %q", err)
			}
			if buf.Len() != 0 {
				t.Errorf("printed %q before failing", buf.String())
			}
		})
	}
}

// TestCheckpointSaveAndLoad checks that every save replaces the whole
// checkpoint (state and positions together), leaves no temporary file
// beside it, and that a corrupt checkpoint is refused rather than read as
// a first start. (That a crash leaves the old file or the new one rests on
// the atomic rename; a test cannot crash in the middle of it.)
func TestCheckpointSaveAndLoad(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "checkpoint.json")
	if cp, err := loadCheckpoint(path); err != nil || len(cp.Next) != 0 {
		t.Fatalf("missing checkpoint: %+v, %v; want an empty one", cp, err)
	}
	for i := range int64(20) {
		if err := saveCheckpoint(path, checkpoint{Seats: state{"ev-1": int(i)}, Next: map[int32]int64{0: i}}); err != nil {
			t.Fatal(err)
		}
		cp, err := loadCheckpoint(path)
		if err != nil || cp.Next[0] != i || cp.Seats["ev-1"] != int(i) {
			t.Fatalf("after save %d: %+v, %v", i, cp, err)
		}
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil || len(entries) != 1 {
		t.Errorf("directory holds %v, want the checkpoint only", entries)
	}
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadCheckpoint(path); err == nil {
		t.Error("a corrupt checkpoint was accepted")
	}
}
