package main

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labtest"
)

func TestMain(m *testing.M) { brokertest.Main(m) }

// TestConsumerGroups runs the lab with -keep and then checks, with its own
// clients, what the broker holds: the messages on the topic, which member
// processed which of them, and the groups' committed offsets.
func TestConsumerGroups(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	topic := brokertest.Name(t, "lab11-orders")
	group := brokertest.Name(t, "lab11")
	billing, audit := group+".billing", group+".audit"
	admin := newAdmin(t, kafka.Brokers)
	t.Cleanup(func() {
		for _, g := range []string{billing, audit} {
			if err := admin.DeleteConsumerGroup(g); err != nil {
				t.Logf("cleanup: deleting group %s: %v", g, err)
			}
		}
		if err := admin.DeleteTopic(topic); err != nil {
			t.Logf("cleanup: deleting topic %s: %v", topic, err)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	obs, err := runLab(ctx, []string{"-brokers", strings.Join(kafka.Brokers, ","), "-topic", topic, "-group", group, "-keep"}, &out)
	if err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}

	all := []int32{0, 1, 2, 3}

	// Assignments, as each member's Setup saw them.
	t.Run("two members split the partitions", func(t *testing.T) {
		checkSplit(t, obs.billing, all)
		for name, parts := range obs.billing {
			if len(parts) == 0 {
				t.Errorf("%s got no partition; with 2 members on 4 partitions each should get some", name)
			}
		}
	})
	t.Run("the fifth member of four partitions is idle", func(t *testing.T) {
		checkSplit(t, obs.audit, all)
		var idle []string
		for name, parts := range obs.audit {
			if len(parts) == 0 {
				idle = append(idle, name)
			}
		}
		if !slices.Equal(idle, []string{"member-5"}) {
			t.Errorf("idle members: got %v, want [member-5]", idle)
		}
	})
	t.Run("after member-2 leaves member-1 owns everything", func(t *testing.T) {
		if len(obs.afterLeave) != 1 || !slices.Equal(obs.afterLeave["member-1"], all) {
			t.Errorf("assignment after the leave: got %v, want member-1 owning %v", obs.afterLeave, all)
		}
	})

	// What Kafka holds, read with our own consumer.
	onTopic := readTopic(t, kafka.Brokers, topic)
	t.Run("the topic holds what the lab produced", func(t *testing.T) {
		var ids []string
		for id := range onTopic {
			ids = append(ids, id)
		}
		brokertest.CheckIDs(t, "topic "+topic, ids, obs.produced)
	})

	// Each group processed every message exactly once across its members
	// (offsets were committed before member-2 left, so nothing repeats).
	t.Run("each group processed every message once", func(t *testing.T) {
		var want []string
		for id := range onTopic {
			want = append(want, id)
		}
		for _, g := range []string{billing, audit} {
			var got []string
			for _, ids := range obs.processed[g] {
				got = append(got, ids...)
			}
			brokertest.CheckIDs(t, "group "+g, got, want)
		}
	})

	// Within billing, a message was processed by the member that owned its
	// partition: member-2 only saw partitions 2 and 3 of the first batch.
	t.Run("messages went to the partition's owner", func(t *testing.T) {
		owned := obs.billing["member-2"]
		for _, id := range obs.processed[billing]["member-2"] {
			if p := onTopic[id]; !slices.Contains(owned, p) {
				t.Errorf("member-2 processed %s from partition %d, which it did not own (%v)", id, p, owned)
			}
		}
	})

	// The broker's view of the groups: committed offsets at the end of each
	// partition, and no member left behind.
	t.Run("committed offsets reach the end of every partition", func(t *testing.T) {
		client := newClient(t, kafka.Brokers)
		for _, g := range []string{billing, audit} {
			resp, err := admin.ListConsumerGroupOffsets(g, map[string][]int32{topic: all})
			if err != nil {
				t.Fatalf("listing offsets of %s: %v", g, err)
			}
			for _, p := range all {
				end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
				if err != nil {
					t.Fatalf("end offset of partition %d: %v", p, err)
				}
				block := resp.GetBlock(topic, p)
				if block == nil || block.Offset != end {
					t.Errorf("group %s partition %d: committed %v, end offset %d", g, p, block, end)
				}
			}
		}
		groups, err := admin.DescribeConsumerGroups([]string{billing, audit})
		if err != nil {
			t.Fatalf("describing groups: %v", err)
		}
		for _, d := range groups {
			if len(d.Members) != 0 {
				t.Errorf("group %s still has %d members after the run (state %s)", d.GroupId, len(d.Members), d.State)
			}
		}
	})
}

// TestOutput runs the lab as a learner would (no -keep), checks what it
// printed against the docs, and that it removed what it created.
func TestOutput(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	topic := brokertest.Name(t, "lab11-orders")
	group := brokertest.Name(t, "lab11")
	admin := newAdmin(t, kafka.Brokers)
	t.Cleanup(func() { removeLeftovers(admin, topic, group) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, []string{"-brokers", strings.Join(kafka.Brokers, ","), "-topic", topic, "-group", group}, &out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	labtest.CheckOutput(t, out.String(), []string{"README.md", "../../docs/11-consumer-groups.md"},
		strings.Join(kafka.Brokers, ","), "127.0.0.1:9092", topic, "lab11.orders", group, "lab11")
	checkGone(t, admin, topic, group)
}

// TestInterruptLeavesNothing cancels the context as Ctrl-C does, while
// member-2 leaves: run returns the cancellation (main then exits 130), every
// member has left, and the topic and both groups are gone.
func TestInterruptLeavesNothing(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	topic := brokertest.Name(t, "lab11-orders")
	group := brokertest.Name(t, "lab11")
	admin := newAdmin(t, kafka.Brokers)
	t.Cleanup(func() { removeLeftovers(admin, topic, group) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := &labtest.CancelOn{Marker: "leaves group", Cancel: cancel}
	_, err := runLab(ctx, []string{"-brokers", strings.Join(kafka.Brokers, ","), "-topic", topic, "-group", group}, out)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run = %v, want the cancellation\noutput:\n%s", err, out.String())
	}
	checkGone(t, admin, topic, group)
}

// checkGone fails the test if the lab's topic or one of its groups is
// still on the broker.
func checkGone(t *testing.T, admin sarama.ClusterAdmin, topic, group string) {
	t.Helper()
	topics, err := admin.ListTopics()
	if err != nil {
		t.Fatalf("listing topics: %v", err)
	}
	if _, ok := topics[topic]; ok {
		t.Errorf("topic %s is still there after the run", topic)
	}
	groups, err := admin.ListConsumerGroups()
	if err != nil {
		t.Fatalf("listing groups: %v", err)
	}
	for _, g := range []string{group + ".billing", group + ".audit"} {
		if _, ok := groups[g]; ok {
			t.Errorf("group %s is still there after the run", g)
		}
	}
}

// removeLeftovers deletes what a failed run may have left.
func removeLeftovers(admin sarama.ClusterAdmin, topic, group string) {
	for _, g := range []string{group + ".billing", group + ".audit"} {
		_ = admin.DeleteConsumerGroup(g)
	}
	_ = admin.DeleteTopic(topic)
}

// TestErrors checks that a missing or unusable broker gives one clear
// sentence and an error.
func TestErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		want []string // substrings of the error; nil means no error
	}{
		{"no broker listening", []string{"-brokers", "127.0.0.1:1"},
			[]string{"connecting to Kafka at 127.0.0.1:1", "go run ./labs/00-setup -embedded-kafka"}},
		{"two brokers, none listening", []string{"-brokers", "127.0.0.1:1,127.0.0.1:2"},
			[]string{"connecting to Kafka at 127.0.0.1:1,127.0.0.1:2: no broker answers", "go run ./labs/00-setup -embedded-kafka"}},
		{"empty broker list", []string{"-brokers", " , "}, []string{"no Kafka broker given"}},
		{"unknown flag", []string{"-nope"}, []string{"-nope"}},
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

// checkSplit asserts that the members' partitions are disjoint and together
// are exactly all partitions.
func checkSplit(t *testing.T, assignment map[string][]int32, all []int32) {
	t.Helper()
	owner := map[int32]string{}
	for name, parts := range assignment {
		for _, p := range parts {
			if other, ok := owner[p]; ok {
				t.Errorf("partition %d is owned by both %s and %s", p, other, name)
			}
			owner[p] = name
		}
	}
	for _, p := range all {
		if _, ok := owner[p]; !ok {
			t.Errorf("partition %d has no owner in %v", p, assignment)
		}
	}
	if len(owner) != len(all) {
		t.Errorf("owned partitions %v, want exactly %v", owner, all)
	}
}

// readTopic reads every partition of the topic from the oldest offset to
// the end and returns message ID -> partition.
func readTopic(t *testing.T, brokers []string, topic string) map[string]int32 {
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
	if len(parts) != partitions {
		t.Errorf("topic %s has %d partitions, want %d", topic, len(parts), partitions)
	}
	found := map[string]int32{}
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
				if prev, ok := found[string(msg.Key)]; ok {
					t.Errorf("message %s is on partitions %d and %d", msg.Key, prev, p)
				}
				found[string(msg.Key)] = p
				done = msg.Offset == end-1
			case <-deadline:
				t.Fatalf("partition %d: still not at offset %d after 30s", p, end)
			}
		}
		_ = pc.Close()
	}
	return found
}

func newClient(t *testing.T, brokers []string) sarama.Client {
	t.Helper()
	client, err := sarama.NewClient(brokers, newConfig("lab11-test"))
	if err != nil {
		t.Fatalf("connecting to Kafka: %v", err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

func newAdmin(t *testing.T, brokers []string) sarama.ClusterAdmin {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(brokers, newConfig("lab11-test"))
	if err != nil {
		t.Fatalf("connecting the admin client to Kafka: %v", err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	return admin
}
