package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labtest"
)

func TestMain(m *testing.M) { brokertest.Main(m) }

// stored is one record as this test reads it from Kafka with its own
// consumer, decoded without the lab's types.
type stored struct {
	partition int32
	offset    int64
	time      time.Time
	key       string
	name      string
	payload   string
}

// TestEventSourcing runs the lab with -keep, reads the topic back itself,
// and checks the timestamps, keys and partitions Kafka stored, the audit
// trail the lab printed, and the states it rebuilt.
func TestEventSourcing(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	topic := brokertest.Name(t, "lab12-users")
	admin := newAdmin(t, kafka.Brokers)
	t.Cleanup(func() { deleteTopic(t, admin, topic) })

	out, obs := runOK(t, "-brokers", strings.Join(kafka.Brokers, ","), "-topic", topic, "-keep")
	onTopic := readTopic(t, kafka.Brokers, topic)

	t.Run("Kafka kept each event's time, key and partition", func(t *testing.T) {
		at := func(h int) time.Time { return day.Add(time.Duration(h) * time.Hour) }
		want := []struct {
			time    time.Time
			key     string
			name    string
			payload string
		}{
			{at(8), "1", "user.created", `{"id":1,"name":"Alice"}`},
			{at(9), "2", "user.created", `{"id":2,"name":"Bob"}`},
			{at(13), "1", "user.deleted", `{"id":1}`},
			{at(15), "2", "user.renamed", `{"id":2,"name":"Cedric"}`},
		}
		if len(onTopic) != len(want) {
			t.Fatalf("the topic holds %d records, want %d: %+v", len(onTopic), len(want), onTopic)
		}
		partitionOf := map[string]int32{}
		nextOffset := map[int32]int64{}
		for i, w := range want { // onTopic is sorted by time
			got := onTopic[i]
			if !got.time.Equal(w.time) || got.key != w.key || got.name != w.name || got.payload != w.payload {
				t.Errorf("record %d: got %s key %s %s %s, want %s key %s %s %s", i,
					got.time.Format(time.RFC3339), got.key, got.name, got.payload,
					w.time.Format(time.RFC3339), w.key, w.name, w.payload)
			}
			if p, ok := partitionOf[got.key]; ok && p != got.partition {
				t.Errorf("user %s has events on partitions %d and %d", got.key, p, got.partition)
			}
			partitionOf[got.key] = got.partition
			if got.offset != nextOffset[got.partition] {
				t.Errorf("record %d: offset %d on partition %d, want %d", i, got.offset, got.partition, nextOffset[got.partition])
			}
			nextOffset[got.partition] = got.offset + 1
		}
	})

	t.Run("the audit trail lists the stored records in time order", func(t *testing.T) {
		var want []string
		for _, r := range onTopic {
			want = append(want, fmt.Sprintf("  %s  partition %d offset %d  %s %s", r.time.UTC().Format("15:04"), r.partition, r.offset, r.name, r.payload))
		}
		if got := auditLines(out); !slices.Equal(got, want) {
			t.Errorf("audit trail:\n got %q\nwant %q", got, want)
		}
		if len(obs.trail) != len(onTopic) {
			t.Fatalf("the lab replayed %d records, the topic holds %d", len(obs.trail), len(onTopic))
		}
		for i, r := range obs.trail {
			if r.Partition != onTopic[i].partition || r.Offset != onTopic[i].offset || !r.Time.Equal(onTopic[i].time) {
				t.Errorf("replayed record %d: %d/%d at %v, stored %d/%d at %v", i, r.Partition, r.Offset, r.Time, onTopic[i].partition, onTopic[i].offset, onTopic[i].time)
			}
		}
	})

	t.Run("state at 10:00 and at the end", func(t *testing.T) {
		checkUsers(t, "as of 10:00", obs.asOf["10:00"], map[int]string{1: "Alice", 2: "Bob"})
		checkUsers(t, "as of 14:00", obs.asOf["14:00"], map[int]string{2: "Bob"})
		checkUsers(t, "at the end", obs.end, map[int]string{2: "Cedric"})
		for _, line := range []string{
			"state as of 10:00: {1: Alice, 2: Bob}",
			"state as of 14:00: {2: Bob}",
			"state at the end: {2: Cedric}",
			"replayed again, skipping applied offsets: 0 applied, 4 skipped: {2: Cedric}, 2 users ever created",
			"replayed again, applying everything: 4 applied: {2: Cedric}, 4 users ever created (wrong)",
		} {
			if !slices.Contains(strings.Split(out, "\n"), line) {
				t.Errorf("the output has no line %q:\n%s", line, out)
			}
		}
	})
}

// TestReplayComesFromKafka writes a log the lab has never seen (the four
// events and a fifth, user 3 "Dora" at 16:00) with this test's own
// producer, then lets the lab rebuild the state with -replay-only. The
// lab writes nothing in that mode, so its state can only come from Kafka.
func TestReplayComesFromKafka(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	topic := brokertest.Name(t, "lab12-users")
	admin := newAdmin(t, kafka.Brokers)
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false); err != nil {
		t.Fatalf("creating topic: %v", err)
	}
	t.Cleanup(func() { deleteTopic(t, admin, topic) })

	client := newClient(t, kafka.Brokers)
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatalf("creating producer: %v", err)
	}
	defer producer.Close()
	at := func(h int) time.Time { return day.Add(time.Duration(h) * time.Hour) }
	// Written user by user, not in time order: the lab must merge.
	for _, e := range []struct {
		at    time.Time
		key   string
		value string
	}{
		{at(9), "2", `{"eventName":"user.created","payload":{"id":2,"name":"Bob"}}`},
		{at(15), "2", `{"eventName":"user.renamed","payload":{"id":2,"name":"Cedric"}}`},
		{at(8), "1", `{"eventName":"user.created","payload":{"id":1,"name":"Alice"}}`},
		{at(13), "1", `{"eventName":"user.deleted","payload":{"id":1}}`},
		{at(16), "3", `{"eventName":"user.created","payload":{"id":3,"name":"Dora"}}`},
	} {
		msg := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(e.key), Value: sarama.StringEncoder(e.value), Timestamp: e.at}
		if _, _, err := producer.SendMessage(msg); err != nil {
			t.Fatalf("producing: %v", err)
		}
	}

	out, obs := runOK(t, "-brokers", strings.Join(kafka.Brokers, ","), "-topic", topic, "-replay-only", "-as-of", "10:00,16:30")
	if strings.Contains(out, "appended") {
		t.Errorf("-replay-only appended events:\n%s", out)
	}
	checkUsers(t, "as of 10:00", obs.asOf["10:00"], map[int]string{1: "Alice", 2: "Bob"})
	checkUsers(t, "as of 16:30", obs.asOf["16:30"], map[int]string{2: "Cedric", 3: "Dora"})
	checkUsers(t, "at the end", obs.end, map[int]string{2: "Cedric", 3: "Dora"})
	var names []string
	for _, r := range obs.trail {
		names = append(names, clock(r.Time)+" "+r.Event.EventName())
	}
	want := []string{"08:00 user.created", "09:00 user.created", "13:00 user.deleted", "15:00 user.renamed", "16:00 user.created"}
	if !slices.Equal(names, want) {
		t.Errorf("replayed in the order %q, want %q", names, want)
	}
}

// TestOutput runs the lab as a learner would, checks what it printed
// against the docs, and that it deleted its topic.
func TestOutput(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	topic := brokertest.Name(t, "lab12-users")
	admin := newAdmin(t, kafka.Brokers)
	t.Cleanup(func() { _ = admin.DeleteTopic(topic) }) // in case the run failed
	out, _ := runOK(t, "-brokers", strings.Join(kafka.Brokers, ","), "-topic", topic)
	labtest.CheckOutput(t, out, []string{"README.md", "../../docs/12-event-sourcing.md"},
		strings.Join(kafka.Brokers, ","), "127.0.0.1:9092", topic, "lab12.users")
	checkTopicGone(t, admin, topic)
}

// TestInterruptDeletesTheTopic cancels the context as Ctrl-C does, right
// after the append: run returns the cancellation (main then exits 130) and
// has deleted its topic on the way out.
func TestInterruptDeletesTheTopic(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	topic := brokertest.Name(t, "lab12-users")
	admin := newAdmin(t, kafka.Brokers)
	t.Cleanup(func() { _ = admin.DeleteTopic(topic) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := &labtest.CancelOn{Marker: "appended 4 events", Cancel: cancel}
	_, err := runLab(ctx, []string{"-brokers", strings.Join(kafka.Brokers, ","), "-topic", topic}, out)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run = %v, want the cancellation\noutput:\n%s", err, out.String())
	}
	checkTopicGone(t, admin, topic)
}

// checkTopicGone fails the test if the topic is still on the broker.
func checkTopicGone(t *testing.T, admin sarama.ClusterAdmin, topic string) {
	t.Helper()
	topics, err := admin.ListTopics()
	if err != nil {
		t.Fatalf("listing topics: %v", err)
	}
	if _, ok := topics[topic]; ok {
		t.Errorf("topic %s is still there after the run", topic)
	}
}

// TestMergeKeepsPartitionOrder: a producer clock that goes backwards must
// not reorder the events of one partition (one user).
func TestMergeKeepsPartitionOrder(t *testing.T) {
	at := func(h int) time.Time { return day.Add(time.Duration(h) * time.Hour) }
	p0 := []record{{Partition: 0, Offset: 0, Time: at(10)}, {Partition: 0, Offset: 1, Time: at(9)}}
	p1 := []record{{Partition: 1, Offset: 0, Time: at(8)}, {Partition: 1, Offset: 1, Time: at(11)}}
	var got []string
	for _, r := range mergeByTime([][]record{p0, p1}) {
		got = append(got, fmt.Sprintf("%d/%d", r.Partition, r.Offset))
	}
	want := []string{"1/0", "0/0", "0/1", "1/1"}
	if !slices.Equal(got, want) {
		t.Errorf("merged %v, want %v", got, want)
	}
}

// TestErrors checks that bad input and a missing broker or topic give one
// clear sentence.
func TestErrors(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	cases := []struct {
		name string
		args []string
		want []string // substrings of the error; nil means no error
	}{
		{"no broker listening", []string{"-brokers", "127.0.0.1:1"},
			[]string{"connecting to Kafka at 127.0.0.1:1", "go run ./labs/00-setup -embedded-kafka"}},
		{"two brokers, none listening", []string{"-brokers", "127.0.0.1:1,127.0.0.1:2"},
			[]string{"connecting to Kafka at 127.0.0.1:1,127.0.0.1:2: no broker answers", "go run ./labs/00-setup -embedded-kafka"}},
		{"empty broker list", []string{"-brokers", ","}, []string{"no Kafka broker given"}},
		{"bad -as-of", []string{"-as-of", "25:99"}, []string{`parsing -as-of "25:99"`}},
		{"replay of a missing topic", []string{"-brokers", strings.Join(kafka.Brokers, ","), "-replay-only", "-topic", brokertest.Name(t, "lab12-missing")},
			[]string{"does not exist", "-keep"}},
		{"stray argument", []string{"billing"}, []string{`unexpected arguments ["billing"]`}},
		{"help", []string{"-h"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var out bytes.Buffer
			err := run(ctx, tc.args, &out)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want one containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans several lines: %q", err)
			}
		})
	}
}

// runOK runs the lab and fails the test on an error.
func runOK(t *testing.T, args ...string) (string, *observations) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	obs, err := runLab(ctx, args, &out)
	if err != nil {
		t.Fatalf("run %v: %v\noutput:\n%s", args, err, out.String())
	}
	return out.String(), obs
}

// auditLines returns the printed audit trail.
func auditLines(out string) []string {
	var lines []string
	in := false
	for _, line := range strings.Split(out, "\n") {
		switch {
		case line == "audit trail:":
			in = true
		case in && strings.HasPrefix(line, "  "):
			lines = append(lines, line)
		case in:
			return lines
		}
	}
	return lines
}

func checkUsers(t *testing.T, when string, got, want map[int]string) {
	t.Helper()
	if !maps.Equal(got, want) {
		t.Errorf("users %s: got %v, want %v", when, got, want)
	}
}

// readTopic reads the whole topic with a plain consumer and returns the
// records sorted by time (then partition).
func readTopic(t *testing.T, brokers []string, topic string) []stored {
	t.Helper()
	client := newClient(t, brokers)
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatalf("creating consumer: %v", err)
	}
	defer consumer.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	var all []stored
	for _, p := range parts {
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatalf("end offset of partition %d: %v", p, err)
		}
		start, err := client.GetOffset(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("start offset of partition %d: %v", p, err)
		}
		if start == end {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("consuming partition %d: %v", p, err)
		}
		deadline := time.After(30 * time.Second)
		for done := false; !done; {
			select {
			case msg := <-pc.Messages():
				var env struct {
					EventName string          `json:"eventName"`
					Payload   json.RawMessage `json:"payload"`
				}
				if err := json.Unmarshal(msg.Value, &env); err != nil {
					t.Fatalf("partition %d offset %d: %v", p, msg.Offset, err)
				}
				all = append(all, stored{p, msg.Offset, msg.Timestamp.UTC(), string(msg.Key), env.EventName, string(env.Payload)})
				done = msg.Offset == end-1
			case <-deadline:
				t.Fatalf("partition %d: still not at offset %d after 30s", p, end)
			}
		}
		_ = pc.Close()
	}
	slices.SortStableFunc(all, func(a, b stored) int {
		if c := a.time.Compare(b.time); c != 0 {
			return c
		}
		return int(a.partition - b.partition)
	})
	return all
}

func deleteTopic(t *testing.T, admin sarama.ClusterAdmin, topic string) {
	t.Helper()
	if err := admin.DeleteTopic(topic); err != nil {
		t.Logf("cleanup: deleting topic %s: %v", topic, err)
	}
}

func newClient(t *testing.T, brokers []string) sarama.Client {
	t.Helper()
	client, err := sarama.NewClient(brokers, newConfig())
	if err != nil {
		t.Fatalf("connecting to Kafka: %v", err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

func newAdmin(t *testing.T, brokers []string) sarama.ClusterAdmin {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(brokers, newConfig())
	if err != nil {
		t.Fatalf("connecting the admin client to Kafka: %v", err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	return admin
}
