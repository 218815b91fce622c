package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labkit"
)

// dayOfUsers is the test's history: four users on two partitions (user ID
// modulo 2), each record stamped with the time its event happened. Two
// events share 12:00; user 1 is renamed after it was deleted.
var dayOfUsers = []struct {
	hour  float64
	event Event
}{
	{8, UserCreated{ID: 1, Name: "Alice"}},
	{8.5, UserCreated{ID: 2, Name: "Bob"}},
	{9, UserCreated{ID: 3, Name: "Carla"}},
	{10, UserRenamed{ID: 2, Name: "Bert"}},
	{11, UserDeleted{ID: 1}},
	{12, UserRenamed{ID: 3, Name: "Cleo"}},
	{12, UserCreated{ID: 4, Name: "Dan"}},
	{13, UserRenamed{ID: 1, Name: "Ann"}},
	{14, UserDeleted{ID: 2}},
}

// TestExerciseStateAsOf checks the lab's exercise, stateAsOf and
// projection.apply, on a log read back from the broker: the test writes
// dayOfUsers with its own producer, reads it with readLog and mergeByTime
// like the lab, and compares the state as of several moments with what
// the events say, naming the records that were at or before the moment.
func TestExerciseStateAsOf(t *testing.T) {
	t.Parallel()
	trail := writeAndReadBack(t)
	if _, err := stateAsOf(trail, day); errors.Is(err, labkit.ErrTODO) {
		t.Fatal(err)
	}
	listed := false
	for _, tc := range []struct {
		at      string
		users   map[int]string
		created int
	}{
		{"07:00", map[int]string{}, 0},
		{"08:00", map[int]string{1: "Alice"}, 1},
		{"09:59", map[int]string{1: "Alice", 2: "Bob", 3: "Carla"}, 3},
		{"10:00", map[int]string{1: "Alice", 2: "Bert", 3: "Carla"}, 3},
		{"11:30", map[int]string{2: "Bert", 3: "Carla"}, 3},
		{"12:00", map[int]string{2: "Bert", 3: "Cleo", 4: "Dan"}, 4},
		{"13:30", map[int]string{2: "Bert", 3: "Cleo", 4: "Dan"}, 4},
		{"23:00", map[int]string{3: "Cleo", 4: "Dan"}, 4},
	} {
		moments, err := parseMoments(tc.at)
		if err != nil {
			t.Fatal(err)
		}
		p, err := stateAsOf(trail, moments[0])
		if err != nil {
			t.Fatalf("stateAsOf(%s): %v", tc.at, err)
		}
		if p == nil {
			t.Fatalf("stateAsOf(%s) returned no projection and no error", tc.at)
		}
		if !maps.Equal(p.users, tc.users) || p.created != tc.created {
			msg := fmt.Sprintf("as of %s the projection holds %s with %d users ever created; want %s and %d", tc.at, formatUsers(p.users), p.created, formatUsers(tc.users), tc.created)
			if !listed { // the records once, for the first moment that is wrong
				msg += fmt.Sprintf(". The records at or before %s:\n%s", tc.at, describeUpTo(trail, moments[0]))
				listed = true
			}
			t.Error(msg)
		}
	}
}

// TestExerciseReplayAppliesEachOffsetOnce replays the whole log into one
// projection and then replays it again, as a service does when it restarts
// with its state intact: the second time apply must apply nothing, and the
// state and the count of users ever created stay as they were. It does
// the same with the log's offsets shifted by 100, as a log that retention
// has trimmed: the projection must remember offsets, not count records.
// An event the projection does not know is an error.
func TestExerciseReplayAppliesEachOffsetOnce(t *testing.T) {
	t.Parallel()
	trail := writeAndReadBack(t)
	p, err := stateAsOf(trail, day.Add(24*time.Hour))
	if errors.Is(err, labkit.ErrTODO) {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatalf("stateAsOf(the end of the day): %v", err)
	}
	if p == nil {
		t.Fatal("stateAsOf returned no projection and no error")
	}
	users, created := maps.Clone(p.users), p.created
	var again []string
	for _, r := range trail {
		applied, err := p.apply(r)
		if err != nil {
			t.Fatalf("applying partition %d offset %d again: %v", r.Partition, r.Offset, err)
		}
		if applied {
			again = append(again, fmt.Sprintf("partition %d offset %d (%s)", r.Partition, r.Offset, r.Event.EventName()))
		}
	}
	if len(again) > 0 {
		t.Errorf("replaying the log into the projection that had applied all of it applied %d of %d records a second time: %s. Skip every offset below the partition's next offset",
			len(again), len(trail), strings.Join(again, ", "))
	}
	if !maps.Equal(p.users, users) || p.created != created {
		t.Errorf("replaying the log again changed the state from %s (%d ever created) to %s (%d)", formatUsers(users), created, formatUsers(p.users), p.created)
	}

	// The offsets of a real log need not start at 0 or follow each other:
	// retention deletes the oldest records, and compaction and
	// transactions leave gaps. Replay the same records at offsets 100
	// higher into a new projection, twice: the second time must apply
	// nothing either.
	shifted := make([]record, len(trail))
	for i, r := range trail {
		r.Offset += 100
		shifted[i] = r
	}
	fresh := newProjection()
	first, err := fresh.applyAll(shifted)
	if err != nil {
		t.Fatalf("replaying the log at offsets from 100 into a new projection: %v", err)
	}
	if first != len(shifted) {
		t.Errorf("a new projection applied %d of %d records of a log whose offsets start at 100; it has applied nothing yet, so it must apply them all", first, len(shifted))
	}
	if second, err := fresh.applyAll(shifted); err != nil {
		t.Fatalf("replaying the log at offsets from 100 a second time: %v", err)
	} else if second > 0 {
		t.Errorf("a log whose offsets start at 100 (as after retention deleted the oldest records), replayed twice into a new projection, had %d of %d records applied a second time. Remember the record's offset + 1 as the partition's next offset (p.next[r.Partition] = r.Offset + 1), not a count of the records applied",
			second, len(shifted))
	}

	r := record{Partition: 0, Offset: 1000, Time: day, Event: userMerged{ID: 9}}
	if applied, err := p.apply(r); err == nil {
		t.Errorf("apply of an event the projection does not know (%s) returned %v and no error; skipping it silently builds a wrong state", r.Event.EventName(), applied)
	}
}

// userMerged is an event the lab's projection does not know.
type userMerged struct{ ID int }

func (e userMerged) EventName() string { return "user.merged" }
func (e userMerged) UserID() int       { return e.ID }

// writeAndReadBack writes dayOfUsers to a new topic with two partitions,
// reads it back with readLog, and returns it merged by timestamp.
func writeAndReadBack(t *testing.T) []record {
	t.Helper()
	kafka := brokertest.Kafka(t)
	topic := brokertest.Name(t, "lab12-users")
	admin := newAdmin(t, kafka.Brokers)
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false); err != nil {
		t.Fatalf("creating topic: %v", err)
	}
	t.Cleanup(func() { deleteTopic(t, admin, topic) })
	cfg := newConfig()
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	producer, err := sarama.NewSyncProducer(kafka.Brokers, cfg)
	if err != nil {
		t.Fatalf("creating producer: %v", err)
	}
	defer producer.Close()
	for _, h := range dayOfUsers {
		value := fmt.Sprintf(`{"eventName":%q,"payload":%s}`, h.event.EventName(), mustJSON(t, h.event))
		msg := &sarama.ProducerMessage{Topic: topic, Partition: int32(h.event.UserID() % 2),
			Key: sarama.StringEncoder(fmt.Sprint(h.event.UserID())), Value: sarama.StringEncoder(value),
			Timestamp: day.Add(time.Duration(h.hour * float64(time.Hour)))}
		if _, _, err := producer.SendMessage(msg); err != nil {
			t.Fatalf("producing: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	perPartition, err := readLog(ctx, newClient(t, kafka.Brokers), topic)
	if err != nil {
		t.Fatal(err)
	}
	return mergeByTime(perPartition)
}

// describeUpTo lists the records of the trail at or before at, one a line.
func describeUpTo(trail []record, at time.Time) string {
	var lines []string
	for _, r := range trail {
		if !r.Time.After(at) {
			lines = append(lines, fmt.Sprintf("  %s  partition %d offset %d  %s %s", clock(r.Time), r.Partition, r.Offset, r.Event.EventName(), r.Payload))
		}
	}
	if len(lines) == 0 {
		return "  none"
	}
	return strings.Join(lines, "\n")
}

// mustJSON encodes an event as its payload.
func mustJSON(t *testing.T, ev Event) string {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
