package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labtest"
)

func TestMain(m *testing.M) { brokertest.Main(m) }

// samples holds one valid value of every contract, keyed by event name.
// A new contract without a sample here fails
// TestExerciseEnvelopeRoundTripsThroughTheBroker.
func samples() map[string]contracts.Event {
	at := time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)
	return map[string]contracts.Event{
		contracts.LocationCreatedName: &contracts.LocationCreated{ID: "loc-9", Name: "Halle", Address: "Weg 2",
			Country: "DE", OpenTime: 9, CloseTime: 22, Halls: []contracts.Hall{{Name: "A", Capacity: 50}, {Name: "B", Capacity: 1}}},
		contracts.EventCreatedName: &contracts.EventCreated{ID: "ev-9", Name: "Quartet", LocationID: "loc-9", Hall: "A",
			Capacity: 50, StartDate: at.Add(123456789 * time.Nanosecond), EndDate: at.Add(2 * time.Hour)},
		contracts.EventBookedName: &contracts.EventBooked{ID: "bk-9", EventID: "ev-9", UserID: "u-9", Seats: 3, Date: at.Add(-time.Hour)},
	}
}

// kafkaClient opens a client of our own, independent of the program.
func kafkaClient(t *testing.T, brokers []string) (sarama.Client, sarama.ClusterAdmin) {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Producer.Return.Successes = true
	cfg.Consumer.Return.Errors = true
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

// newTopic creates a topic for one test and deletes it at the end.
func newTopic(t *testing.T, client sarama.Client, admin sarama.ClusterAdmin, prefix string, partitions int32) string {
	t.Helper()
	topic := brokertest.Name(t, prefix)
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: -1}, false); err != nil {
		t.Fatalf("creating topic %s: %v", topic, err)
	}
	t.Cleanup(func() { _ = admin.DeleteTopic(topic) })
	if err := client.RefreshMetadata(topic); err != nil {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	return topic
}

// readAll returns every record of every partition of topic, by partition.
func readAll(t *testing.T, client sarama.Client, topic string) map[int32][]*sarama.ConsumerMessage {
	t.Helper()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	defer consumer.Close()
	partitions, err := client.Partitions(topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[int32][]*sarama.ConsumerMessage{}
	for _, p := range partitions {
		msgs, err := readPartition(ctx, client, consumer, topic, p)
		if err != nil {
			t.Fatalf("reading %s/%d: %v", topic, p, err)
		}
		got[p] = msgs
	}
	return got
}

// jsonDetail matches the line of a record that the program reports as a
// malformed envelope, up to encoding/json's own words, which follow.
var jsonDetail = regexp.MustCompile(`(?m)^(  offset [0-9]+ key \S+: error: malformed envelope: ).+$`)

// TestRunMatchesDocs runs the lab, checks its output against the README and
// the chapter, and then checks with our own client what reached the topic.
func TestRunMatchesDocs(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	prefix := brokertest.Name(t, "lab09")
	client, admin := kafkaClient(t, kafka.Brokers)
	t.Cleanup(func() {
		for _, s := range []string{".event.created", ".event.booked", ".events"} {
			_ = admin.DeleteTopic(prefix + s)
		}
	})

	var buf bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, []string{"-brokers", strings.Join(kafka.Brokers, ","), "-topic", prefix, "-keep"}, &buf); err != nil {
		t.Fatalf("run: %v\n%s", err, buf.String())
	}
	// The words after "malformed envelope: " are encoding/json's, not the
	// lab's, and depend on the entry point the decoder uses: for the
	// envelope cut short, json.Decoder (the solution) says "unexpected
	// EOF", json.Unmarshal "unexpected end of JSON input". What is checked
	// is that the record is reported malformed at its offset and the
	// consumer goes on, so read any words there as the docs' ones.
	output := jsonDetail.ReplaceAllString(buf.String(), "${1}unexpected EOF")
	replacements := []string{prefix, "lab09", strings.Join(kafka.Brokers, ","), "127.0.0.1:9092"}
	labtest.CheckOutput(t, output, []string{"README.md", "../../docs/09-partition-key-envelope.md"}, replacements...)

	// Partitions and offsets are the lesson here, so the output must match
	// the README exactly, numbers included, not only with numbers as
	// wildcards.
	readme, err := labtest.ExpectedOutput("README.md")
	if err != nil {
		t.Fatal(err)
	}
	printed := strings.NewReplacer(replacements...).Replace(output)
	if g, w := strings.TrimRight(printed, "\n"), strings.Join(readme, "\n"); g != w {
		t.Errorf("the output differs from README.md in its numbers:\n--- got\n%s\n--- want\n%s", g, w)
	}

	// The one topic has two partitions; each key sits on one of them, in
	// the order the program produced.
	got := readAll(t, client, prefix+".events")
	if len(got) != eventsPartitions {
		t.Fatalf("%s has %d partitions, want %d", prefix+".events", len(got), eventsPartitions)
	}
	perKey := map[string][]string{} // key -> "partition:what" in offset order
	for p, msgs := range got {
		for _, m := range msgs {
			what := "broken"
			if _, ev, err := contracts.Unwrap(m.Value); err == nil {
				what = ev.EventName() + " " + idOf(ev)
			}
			perKey[string(m.Key)] = append(perKey[string(m.Key)], fmt.Sprintf("%d:%s", p, what))
		}
	}
	want := map[string][]string{
		"loc-1": {"location.created loc-1"},
		"loc-2": {"location.created loc-2"},
		"ev-1":  {"event.created ev-1", "event.booked bk-1", "event.booked bk-3", "broken"},
		"ev-2":  {"event.created ev-2", "event.booked bk-2", "broken", "broken", "event.booked bk-4"},
	}
	for key, seq := range want {
		recs := perKey[key]
		if len(recs) != len(seq) {
			t.Errorf("key %s: %d records %v, want %d %v", key, len(recs), recs, len(seq), seq)
			continue
		}
		partition := strings.SplitN(recs[0], ":", 2)[0]
		for i, r := range recs {
			p, what, _ := strings.Cut(r, ":")
			if p != partition {
				t.Errorf("key %s is on partitions %s and %s: %v", key, partition, p, recs)
			}
			if what != seq[i] {
				t.Errorf("key %s record %d is %q, want %q (all: %v)", key, i, what, seq[i], recs)
			}
		}
	}
	if len(perKey) != len(want) {
		t.Errorf("keys on the topic: %v, want those of %v", perKey, want)
	}

	// Part 3's record, the last of key ev-1: the wrongly tagged
	// event.created arrived as an empty payload, a struct with every field
	// tagged json:"id" (built here on its own) decodes it as empty without
	// an error, and the contracts' decoder refuses it.
	var last *sarama.ConsumerMessage
	for _, msgs := range got {
		for _, m := range msgs {
			if string(m.Key) == "ev-1" {
				last = m
			}
		}
	}
	if last == nil {
		t.Fatal("no record with key ev-1 on the topic")
	}
	if g, w := string(last.Value), `{"eventName":"event.created","payload":{}}`; g != w {
		t.Errorf("part 3's record is %s, want %s", g, w)
	}
	fields := make([]reflect.StructField, 0, 7)
	for _, name := range []string{"ID", "Name", "LocationID", "Hall"} {
		fields = append(fields, reflect.StructField{Name: name, Type: reflect.TypeFor[string](), Tag: `json:"id"`})
	}
	fields = append(fields, reflect.StructField{Name: "Capacity", Type: reflect.TypeFor[int](), Tag: `json:"id"`},
		reflect.StructField{Name: "StartDate", Type: reflect.TypeFor[time.Time](), Tag: `json:"id"`},
		reflect.StructField{Name: "EndDate", Type: reflect.TypeFor[time.Time](), Tag: `json:"id"`})
	var env struct {
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(last.Value, &env); err != nil {
		t.Fatalf("part 3's envelope: %v", err)
	}
	decoded := reflect.New(reflect.StructOf(fields))
	if err := json.Unmarshal(env.Payload, decoded.Interface()); err != nil || !decoded.Elem().IsZero() {
		t.Errorf("a reader with the wrongly tagged struct decoded %+v, %v; want the zero value and no error", decoded.Elem(), err)
	}
	if _, _, err := contracts.Unwrap(last.Value); !errors.Is(err, contracts.ErrInvalid) {
		t.Errorf("contracts.Unwrap of part 3's record: %v; want %v", err, contracts.ErrInvalid)
	}
}

// TestSameKeySamePartitionInOrder produces interleaved sequences for many
// keys and checks that every key stays on one partition, in order.
func TestSameKeySamePartitionInOrder(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	client, admin := kafkaClient(t, kafka.Brokers)
	topic := newTopic(t, client, admin, "lab09-keys", 4)

	producerClient, err := sarama.NewClient(kafka.Brokers, newConfig())
	if err != nil {
		t.Fatalf("producer client: %v", err)
	}
	defer producerClient.Close()
	producer, err := sarama.NewSyncProducerFromClient(producerClient)
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	defer producer.Close()

	const keys, perKey = 40, 5
	landed := map[string]int32{}
	for seq := 1; seq <= perKey; seq++ { // interleaved: ev-00 #1, ev-01 #1, ..., ev-00 #2, ...
		for k := range keys {
			key := fmt.Sprintf("ev-%02d", k)
			ev := &contracts.EventBooked{ID: fmt.Sprintf("%s-bk-%d", key, seq), EventID: key, Seats: seq,
				Date: time.Date(2026, 12, 1, 0, 0, seq, 0, time.UTC)}
			p, _, err := publish(producer, topic, ev)
			if err != nil {
				t.Fatalf("publish: %v", err)
			}
			if first, ok := landed[key]; ok && first != p {
				t.Errorf("producer put key %s on partitions %d and %d", key, first, p)
			}
			landed[key] = p
		}
	}

	seen := map[string][]int{}
	partitionOf := map[string]int32{}
	used := map[int32]bool{}
	for p, msgs := range readAll(t, client, topic) {
		for _, m := range msgs {
			ev, err := decodeEnvelope(m.Value)
			if err != nil {
				t.Fatalf("%d/%d: %v", p, m.Offset, err)
			}
			b := ev.(*contracts.EventBooked)
			if string(m.Key) != b.EventID {
				t.Errorf("record key %q, want the partition key %q", m.Key, b.EventID)
			}
			if q, ok := partitionOf[b.EventID]; ok && q != p {
				t.Errorf("key %s found on partitions %d and %d", b.EventID, q, p)
			}
			partitionOf[b.EventID] = p
			used[p] = true
			seen[b.EventID] = append(seen[b.EventID], b.Seats)
		}
	}
	if len(seen) != keys {
		t.Errorf("found %d keys, want %d", len(seen), keys)
	}
	for key, seqs := range seen {
		if !sort.IntsAreSorted(seqs) || len(seqs) != perKey {
			t.Errorf("key %s read in order %v, want 1..%d", key, seqs, perKey)
		}
	}
	if len(used) < 2 {
		t.Errorf("%d keys all landed on %d partition(s); the test proves nothing", keys, len(used))
	}
}

// TestInterruptDeletesTheTopics cancels the context as Ctrl-C does, when
// part 2 begins: run returns the cancellation (main then exits 130) and has
// deleted the three topics on the way out.
func TestInterruptDeletesTheTopics(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	prefix := brokertest.Name(t, "lab09")
	_, admin := kafkaClient(t, kafka.Brokers)
	topics := []string{prefix + ".event.created", prefix + ".event.booked", prefix + ".events"}
	t.Cleanup(func() {
		for _, topic := range topics {
			_ = admin.DeleteTopic(topic)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := &labtest.CancelOn{Marker: "part 2, the fix", Cancel: cancel}
	err := run(ctx, []string{"-brokers", strings.Join(kafka.Brokers, ","), "-topic", prefix}, out)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run = %v, want the cancellation\noutput:\n%s", err, out.String())
	}
	left, err := admin.ListTopics()
	if err != nil {
		t.Fatalf("listing topics: %v", err)
	}
	for _, topic := range topics {
		if _, ok := left[topic]; ok {
			t.Errorf("topic %s is still there after the interrupted run", topic)
		}
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
		{"empty list", " , ", "no Kafka broker given"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			err := run(context.Background(), []string{"-brokers", tc.brokers}, &buf)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run = %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "no broker answers") && !strings.Contains(err.Error(), "-embedded-kafka") {
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

// idOf returns the ID of an event, for messages.
func idOf(ev contracts.Event) string {
	switch e := ev.(type) {
	case *contracts.LocationCreated:
		return e.ID
	case *contracts.EventCreated:
		return e.ID
	case *contracts.EventBooked:
		return e.ID
	}
	return "?"
}
