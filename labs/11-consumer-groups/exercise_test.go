package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labkit"
)

// errCrash is what the test's handler returns where a real one would crash.
var errCrash = errors.New("the handler crashed")

// TestExerciseMarksOnlyAfterProcessing checks the lab's exercise,
// consumeClaim, against the broker's record of the group. Ten messages,
// m01 to m10, on one partition (offsets 0 to 9). Member 1 processes m01 to
// m04 and fails on m05; it must stop there, and the group must have
// committed offset 4: m05 is the next to read. Member 2 joins the same
// group after it, must start at m05, and process m05 to m10 exactly once;
// the group then commits offset 10.
func TestExerciseMarksOnlyAfterProcessing(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	admin := newAdmin(t, kafka.Brokers)
	topic := brokertest.Name(t, "lab11-orders")
	group := brokertest.Name(t, "lab11-exercise")
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); err != nil {
		t.Fatalf("creating topic %s: %v", topic, err)
	}
	t.Cleanup(func() {
		_ = admin.DeleteConsumerGroup(group)
		_ = admin.DeleteTopic(topic)
	})
	client := newClient(t, kafka.Brokers)
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	ids, err := produce(producer, topic, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	const crashAt = "m05" // offset 4

	// Member 1: processes until it fails on m05.
	var before []string
	failure := consumeAs(t, kafka.Brokers, group, topic, "member-1", func(msg *sarama.ConsumerMessage) error {
		if string(msg.Key) == crashAt {
			return fmt.Errorf("processing %s: %w", msg.Key, errCrash)
		}
		before = append(before, string(msg.Key))
		return nil
	}, func() bool { return slices.Contains(before, "m10") })
	if errors.Is(failure, labkit.ErrTODO) {
		t.Fatal(failure)
	}
	if !errors.Is(failure, errCrash) {
		t.Errorf("when handle failed on %s, consumeClaim returned %v; want handle's error, wrapped, so that the session ends there as after a crash", crashAt, failure)
	}
	if !slices.Equal(before, ids[:4]) {
		t.Errorf("member 1 processed %v, want %v and then the failure on %s", before, ids[:4], crashAt)
	}
	switch committed := committedOffset(t, admin, group, topic); {
	case committed > 4:
		var skipped []string
		for _, id := range ids[4:min(committed, int64(len(ids)))] {
			if !slices.Contains(before, id) {
				skipped = append(skipped, id)
			}
		}
		t.Errorf("member 1 processed %v and failed on %s (offset 4), but the group committed offset %d: the next owner starts there, and %v are never processed. Mark a message only after handle succeeded",
			before, crashAt, committed, skipped)
	case committed < 4:
		t.Errorf("member 1 processed %v, but the group committed %s: the next owner processes them again. Mark every message handle processed",
			ids[:4], describeCommitted(committed))
	}

	// Member 2: a restart of the same group resumes at the committed offset.
	var after []string
	failure = consumeAs(t, kafka.Brokers, group, topic, "member-2", func(msg *sarama.ConsumerMessage) error {
		after = append(after, string(msg.Key))
		return nil
	}, func() bool { return slices.Contains(after, "m10") })
	if failure != nil {
		t.Fatalf("member 2: %v", failure)
	}
	brokertest.CheckIDs(t, "member 2, after member 1 failed on "+crashAt, after, ids[4:])
	if committed := committedOffset(t, admin, group, topic); committed != 10 {
		t.Errorf("member 2 processed %v, and the group committed %s; want offset 10, after m10", after, describeCommitted(committed))
	}
}

// consumeAs joins group as one member with a consumer group of its own,
// hands the partitions it gets to consumeClaim (through member) with
// handle, and leaves the group (Close commits what was marked) once the
// session ended, done reports true, or 20 s passed. It returns the first
// error consumeClaim returned.
func consumeAs(t *testing.T, brokers []string, group, topic, name string, handle func(*sarama.ConsumerMessage) error, done func() bool) error {
	t.Helper()
	cg, err := sarama.NewConsumerGroup(brokers, group, newConfig(name))
	if err != nil {
		t.Fatalf("joining group %s as %s: %v", group, name, err)
	}
	b := newBoard()
	var mu sync.Mutex // handle runs on sarama's goroutine; done on this one
	m := &member{group: group, name: name, topic: topic, board: b, handle: func(msg *sarama.ConsumerMessage) error {
		mu.Lock()
		defer mu.Unlock()
		return handle(msg)
	}}
	go func() {
		for range cg.Errors() {
			// consumeClaim's errors reach the board through member.
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ended := make(chan error, 1)
	go func() { ended <- cg.Consume(ctx, []string{topic}, m) }()
	deadline := time.Now().Add(20 * time.Second)
	for finished := false; !finished && time.Now().Before(deadline); {
		select {
		case err := <-ended:
			if err != nil {
				t.Errorf("%s: Consume: %v", name, err)
			}
			ended <- nil
			finished = true
		case <-time.After(20 * time.Millisecond):
			mu.Lock()
			finished = done()
			mu.Unlock()
		}
	}
	cancel()
	if err := cg.Close(); err != nil {
		t.Errorf("%s leaving group %s: %v", name, group, err)
	}
	<-ended
	b.mu.Lock()
	defer b.mu.Unlock()
	return errors.Unwrap(b.failure)
}

// committedOffset asks the broker what the group committed for partition
// 0 of topic; -1 means nothing.
func committedOffset(t *testing.T, admin sarama.ClusterAdmin, group, topic string) int64 {
	t.Helper()
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0}})
	if err != nil {
		t.Fatalf("reading the offsets of group %s: %v", group, err)
	}
	if b := resp.GetBlock(topic, 0); b != nil {
		return b.Offset
	}
	return -1
}

// describeCommitted says what a committed offset means.
func describeCommitted(offset int64) string {
	if offset < 0 {
		return "no offset at all"
	}
	return fmt.Sprintf("offset %d", offset)
}
