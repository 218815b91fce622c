package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// produceBig writes one record of up to 2 MB with a producer of the
// test's own (sarama refuses more than 1 MB unless told), as another
// client of the cluster could. Its partitioner is the emitter's, so the
// record lands on the same partition as events with the same key.
func (e *env) produceBig(key string, value []byte) (int32, int64) {
	e.t.Helper()
	cfg := testConfig()
	cfg.Producer.MaxMessageBytes = 2 << 20
	cfg.Producer.Partitioner = sarama.NewMurmur2Partitioner
	p, err := sarama.NewSyncProducer(e.brokers, cfg)
	if err != nil {
		e.t.Fatalf("test producer: %v", err)
	}
	defer p.Close()
	partition, offset, err := p.SendMessage(&sarama.ProducerMessage{
		Topic: e.topic, Key: sarama.StringEncoder(key), Value: sarama.ByteEncoder(value),
	})
	if err != nil {
		e.t.Fatalf("producing a %d-byte record: %v", len(value), err)
	}
	return partition, offset
}

// listenerOf builds a group or a replay listener.
func (e *env) listenerOf(mode string) *Listener {
	e.t.Helper()
	if mode == "group" {
		return e.groupListener(brokertest.Name(e.t, "group"))
	}
	return e.replayListener()
}

// awaitHandled waits until the handler saw id.
func awaitHandled(t *testing.T, l *Listener, s *seen, id string) {
	t.Helper()
	brokertest.Eventually(t, wait, func() error {
		if !s.distinct()[id] {
			return fmt.Errorf("%s not handled yet; stalled: %v", id, l.Stalled())
		}
		return nil
	})
}

// TestNearLimitRecordIsDeadLettered: a bad record of 1,048,400 bytes is
// one the broker takes, but whose dead-letter copy with headers would not
// fit the producer's limit. Its copy is cut to 64 KiB and says so, the
// partition moves on to the good event behind it, and the listener never
// reports itself stalled. Both the group and the replay listener.
func TestNearLimitRecordIsDeadLettered(t *testing.T) {
	for _, mode := range []string{"group", "replay"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			l := e.listenerOf(mode)
			prefix := `{"eventName":"event.created","payload":{"id":"ev-1","location_id":"l","hall":"h","capacity":1,"name":"`
			bad := []byte(prefix + strings.Repeat("x", 1_048_400-len(prefix)-3) + `"}}`)
			e.produceBig("ev-1", bad)
			e.emit(e.emitter(), booked("after", "ev-1", 1))

			s := newSeen()
			listen(t, l, s.handler)
			awaitHandled(t, l, s, "after")
			if mode == "replay" {
				select {
				case <-l.CaughtUp():
				case <-time.After(wait):
					t.Fatalf("not caught up: %s", l.caught.describe())
				}
			}
			dead := e.records(e.dlq)
			if len(dead) != 1 {
				t.Fatalf("%d dead letters, want 1", len(dead))
			}
			d := dead[0]
			for _, h := range []struct{ key, want string }{
				{HeaderReason, msgqueue.ReasonTooLarge},
				{msgqueue.HeaderTruncated, "true"},
				{msgqueue.HeaderOriginalSize, strconv.Itoa(len(bad))},
			} {
				if got := header(d, h.key); got != h.want {
					t.Errorf("dead letter %s = %q, want %q", h.key, got, h.want)
				}
			}
			if len(d.Value) != msgqueue.MaxMessageSize || string(d.Value) != string(bad[:msgqueue.MaxMessageSize]) {
				t.Errorf("the copy holds %d bytes, want the first %d of the record", len(d.Value), msgqueue.MaxMessageSize)
			}
			if err := l.Stalled(); err != nil {
				t.Errorf("Stalled = %v after the partition moved on", err)
			}
		})
	}
}

// TestOversizedRecordsAreNeverHandled: a record over 64 KiB is poison even
// when it holds a valid event (a 200 KB event.created would otherwise be
// stored and served).
func TestOversizedRecordsAreNeverHandled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.replayListener()
	ev := &contracts.EventCreated{ID: "ev-big", LocationID: "l", Hall: "h", Capacity: 1, Name: strings.Repeat("x", 200<<10)}
	value, err := contracts.Wrap(ev) // valid JSON, only too large
	if err != nil {
		t.Fatal(err)
	}
	e.produceBig("ev-big", value)
	e.emit(e.emitter(), booked("after", "ev-big", 1))
	s := newSeen()
	listen(t, l, s.handler)
	awaitHandled(t, l, s, "after")
	if s.distinct()["ev-big"] {
		t.Error("the handler got the 200 KB event")
	}
	if dead := e.records(e.dlq); len(dead) != 1 || header(dead[0], HeaderReason) != msgqueue.ReasonTooLarge {
		t.Errorf("dead letters %d, want 1 with reason %s", len(dead), msgqueue.ReasonTooLarge)
	}
}

// TestDeadLetterTopicThatRefusesTheCopy: when the dead-letter topic
// refuses even the cut copy (its max.message.bytes is tiny), the listener
// sends the copy without key and value, says so, and moves on instead of
// retrying the same record for ever.
func TestDeadLetterTopicThatRefusesTheCopy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	limit := "2048"
	err := e.adminClient().CreateTopic(e.dlq, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1,
		ConfigEntries: map[string]*string{"max.message.bytes": &limit}}, false)
	if err != nil {
		t.Fatal(err)
	}
	l := e.groupListener(brokertest.Name(t, "group"))
	e.produceBig("ev-1", []byte(strings.Repeat("not an envelope ", 1000)))
	e.emit(e.emitter(), booked("after", "ev-1", 1))
	s := newSeen()
	listen(t, l, s.handler)
	awaitHandled(t, l, s, "after")
	dead := e.records(e.dlq)
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	d := dead[0]
	if len(d.Value) != 0 || len(d.Key) != 0 || header(d, HeaderBodyDropped) != "true" || header(d, HeaderReason) != msgqueue.ReasonMalformed {
		t.Errorf("dead letter key %q, %d-byte value, %s=%q, reason %q; want no key or value, true, %s",
			d.Key, len(d.Value), HeaderBodyDropped, header(d, HeaderBodyDropped), header(d, HeaderReason), msgqueue.ReasonMalformed)
	}
}

// TestStalledWhileTheDeadLetterTopicIsGone: a partition that cannot move
// past a record (its dead-letter copy keeps failing) makes Stalled say so,
// with the reason; once the copy goes through, the partition moves on and
// Stalled is nil again.
func TestStalledWhileTheDeadLetterTopicIsGone(t *testing.T) {
	for _, mode := range []string{"group", "replay"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			l := e.listenerOf(mode)
			if err := e.adminClient().DeleteTopic(e.dlq); err != nil {
				t.Fatal(err)
			}
			e.produceBig("ev-1", []byte(`not an envelope`))
			e.emit(e.emitter(), booked("after", "ev-1", 1))
			s := newSeen()
			listen(t, l, s.handler)
			brokertest.Eventually(t, wait, func() error {
				err := l.Stalled()
				if err == nil || !strings.Contains(err.Error(), "cannot move past offset 0") {
					return fmt.Errorf("Stalled = %v, want the partition that cannot move past offset 0", err)
				}
				return nil
			})
			t.Logf("Stalled: %v", l.Stalled())
			if s.distinct()["after"] {
				t.Fatal("the event behind the stuck record was handled")
			}
			err := e.adminClient().CreateTopic(e.dlq, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false)
			if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
				t.Fatal(err)
			}
			awaitHandled(t, l, s, "after")
			if err := l.Stalled(); err != nil {
				t.Errorf("Stalled = %v after the partition moved on", err)
			}
		})
	}
}

// TestStalledIsNilWhenIdle: a listener that has nothing to do, or that
// retries a handler within its attempts, is not stalled.
func TestStalledIsNilWhenIdle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.replayListener()
	if err := l.Stalled(); err != nil {
		t.Errorf("Stalled before Listen = %v", err)
	}
	listen(t, l, func(context.Context, contracts.Event) error { return nil })
	<-l.CaughtUp()
	if err := l.Stalled(); err != nil {
		t.Errorf("Stalled while idle = %v", err)
	}
}

// bulkyLocation is a valid location.created whose JSON is over 64 KiB: a
// JSON encoder writes each "<" as the six bytes \u003c.
func bulkyLocation() *contracts.LocationCreated {
	loc := &contracts.LocationCreated{ID: "loc-bulky"}
	for i := range contracts.MaxHalls {
		name := fmt.Sprintf("%03d", i) + strings.Repeat("<", contracts.MaxTextBytes-3)
		loc.Halls = append(loc.Halls, contracts.Hall{Name: name, Capacity: 1})
	}
	return loc
}

// TestEmitRefusesOversizedEvents: an event whose record would be over
// 64 KiB is never written, so no listener has to refuse it.
func TestEmitRefusesOversizedEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	em := e.emitter()
	loc := bulkyLocation()
	if err := loc.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := em.Emit(context.Background(), loc); !errors.Is(err, msgqueue.ErrTooLarge) {
		t.Errorf("Emit = %v, want ErrTooLarge", err)
	}
	if n := len(e.records(e.topic)); n != 0 {
		t.Errorf("the topic holds %d records", n)
	}
}
