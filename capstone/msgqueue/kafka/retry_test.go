package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// A failing handler gets the same record again, in place: a record that
// succeeds on the third attempt is not dead-lettered; one that always fails
// is dead-lettered after the last attempt, one that fails with Permanent at
// once; the records after them on the partition wait for them and then
// arrive, in order.
func TestRetryThenDeadLetter(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	group := brokertest.Name(t, "group")
	l := e.groupListener(group, WithDeliveryLimit(3), WithRetryBackoff(10*time.Millisecond, 40*time.Millisecond))
	em := e.emitter()
	// One key, so one partition, in this order.
	e.emit(em,
		booked("flaky", "ev-1", 1),
		booked("doomed", "ev-1", 2),
		booked("permanent", "ev-1", 3),
		booked("after", "ev-1", 4),
	)

	var (
		mu    sync.Mutex
		calls []string
	)
	h := func(_ context.Context, ev contracts.Event) error {
		id := idOf(ev)
		mu.Lock()
		calls = append(calls, id)
		n := 0
		for _, c := range calls {
			if c == id {
				n++
			}
		}
		mu.Unlock()
		switch {
		case id == "flaky" && n < 3:
			return fmt.Errorf("flaky: attempt %d fails", n)
		case id == "doomed":
			return errors.New("doomed: the database is down")
		case id == "permanent":
			return msgqueue.Permanent(errors.New("permanent: this booking can never be stored"))
		}
		return nil
	}
	stop := listen(t, l, h)
	brokertest.Eventually(t, wait, func() error {
		mu.Lock()
		defer mu.Unlock()
		if !slices.Contains(calls, "after") {
			return fmt.Errorf("calls so far %v", calls)
		}
		return nil
	})
	stop()

	wantCalls := []string{"flaky", "flaky", "flaky", "doomed", "doomed", "doomed", "permanent", "after"}
	mu.Lock()
	if !slices.Equal(calls, wantCalls) {
		t.Errorf("handler calls\n got %v\nwant %v", calls, wantCalls)
	}
	mu.Unlock()

	// The dead letters are the raw records, with headers saying why and
	// where they came from.
	originals := map[string]*sarama.ConsumerMessage{}
	for _, r := range e.records(e.topic) {
		_, ev, _ := contracts.Unwrap(r.Value)
		originals[idOf(ev)] = r
	}
	dead := e.records(e.dlq)
	if len(dead) != 2 {
		t.Fatalf("%d dead letters, want 2 (doomed, permanent)", len(dead))
	}
	for i, want := range []struct{ id, reason, attempts, errText string }{
		{"doomed", ReasonRetriesExhausted, "3", "doomed: the database is down"},
		{"permanent", ReasonPermanent, "1", "permanent: this booking can never be stored"},
	} {
		d, orig := dead[i], originals[want.id]
		if string(d.Value) != string(orig.Value) || string(d.Key) != string(orig.Key) {
			t.Errorf("dead letter %d is not the original record of %s: key %q value %s", i, want.id, d.Key, d.Value)
		}
		for k, v := range map[string]string{
			HeaderReason:    want.reason,
			HeaderAttempts:  want.attempts,
			HeaderError:     want.errText,
			HeaderEventName: contracts.EventBookedName,
			HeaderTopic:     e.topic,
			HeaderPartition: strconv.Itoa(int(orig.Partition)),
			HeaderOffset:    strconv.FormatInt(orig.Offset, 10),
			HeaderConsumer:  group,
		} {
			if got := header(d, k); got != v {
				t.Errorf("dead letter of %s: header %s = %q, want %q", want.id, k, got, v)
			}
		}
	}

	// Everything was processed, so everything is committed.
	if err := l.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if err := e.committedAll(group); err != nil {
		t.Error(err)
	}
}

// Records no handler could ever process go to the dead-letter topic at once
// and the partition moves on: a value that is not JSON, an envelope without
// eventName, an event name no contract has, a payload that fails Validate.
// A broken record of a name the listener does not handle is not its
// business: skipped, not dead-lettered. Replay mode, so both modes are
// covered.
func TestPoisonGoesToDeadLetters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.replayListener()
	em := e.emitter()

	// One key, so all on one partition, the good event last.
	poison := []struct{ value, reason, name string }{
		{`{"eventName": "event.booked", "payload": `, ReasonMalformed, ""},
		{`{"payload": {"id": "b-1", "event_id": "ev-1", "seats": 1}}`, ReasonMalformed, ""},
		{`{"eventName": "event.cancelled", "payload": {"id": "ev-1"}}`, ReasonUnknownEvent, "event.cancelled"},
		{`{"eventName": "event.booked", "payload": {"id": "", "event_id": "ev-1", "seats": 0}}`, ReasonInvalidPayload, "event.booked"},
		{`{"eventName": "event.created", "payload": {"id": ""}}`, "", ""}, // not asked for: skipped
	}
	offsets := map[int64]int{}
	for i, p := range poison {
		_, off := e.produceRaw("ev-1", []byte(p.value))
		offsets[off] = i
	}
	e.emit(em, booked("good", "ev-1", 1))

	s := newSeen()
	listen(t, l, s.handler, contracts.EventBookedName)
	select {
	case <-l.CaughtUp():
	case <-time.After(wait):
		t.Fatalf("not caught up after %v: %s", wait, l.caught.describe())
	}
	if got := s.snapshot(); !slices.Equal(got, []string{"good"}) {
		t.Errorf("handler got %v, want only [good]", got)
	}

	dead := e.records(e.dlq)
	if len(dead) != 4 {
		t.Fatalf("%d dead letters, want 4", len(dead))
	}
	for _, d := range dead {
		off, _ := strconv.ParseInt(header(d, HeaderOffset), 10, 64)
		i, ok := offsets[off]
		if !ok {
			t.Errorf("dead letter with offset header %q matches no poison record", header(d, HeaderOffset))
			continue
		}
		p := poison[i]
		if string(d.Value) != p.value {
			t.Errorf("dead letter %d: value %s, want the original %s", i, d.Value, p.value)
		}
		if got := header(d, HeaderReason); got != p.reason {
			t.Errorf("poison %d (%s): reason %q, want %q", i, p.value, got, p.reason)
		}
		if got := header(d, HeaderEventName); got != p.name {
			t.Errorf("poison %d: event name header %q, want %q", i, got, p.name)
		}
		if got := header(d, HeaderAttempts); got != "0" {
			t.Errorf("poison %d: attempts %q, want 0 (never handed to the handler)", i, got)
		}
		if got := header(d, HeaderConsumer); got != "replay" {
			t.Errorf("poison %d: consumer %q, want replay", i, got)
		}
	}
}

// A record whose handler keeps failing holds its partition: stopping in the
// middle of the retries commits nothing past it, so the next member of the
// group gets it again, and the records behind it, in order.
func TestStopDuringRetriesCommitsNothingPastTheRecord(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	group := brokertest.Name(t, "group")
	em := e.emitter()
	e.emit(em, booked("ok-1", "ev-1", 1), booked("stuck", "ev-1", 2), booked("ok-2", "ev-1", 3))

	// Many attempts, so that the stop comes in the middle of them.
	first := e.groupListener(group, WithDeliveryLimit(1000), WithRetryBackoff(10*time.Millisecond, 10*time.Millisecond))
	var failures atomic.Int64
	stop := listen(t, first, func(_ context.Context, ev contracts.Event) error {
		if idOf(ev) == "stuck" {
			failures.Add(1)
			return errors.New("the database is down")
		}
		return nil
	})
	brokertest.Eventually(t, wait, func() error {
		if n := failures.Load(); n < 3 {
			return fmt.Errorf("%d failures so far", n)
		}
		return nil
	})
	stop()
	if err := first.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if n := len(e.records(e.dlq)); n != 0 {
		t.Errorf("%d records dead-lettered; the retries were not over", n)
	}

	second := e.groupListener(group)
	s := newSeen()
	listen(t, second, s.handler)
	brokertest.Eventually(t, wait, func() error { return diff([]string{"stuck", "ok-2"}, s.distinct()) })
	if got := s.snapshot(); !slices.Equal(got, []string{"stuck", "ok-2"}) {
		t.Errorf("after the restart the handler got %v, want [stuck ok-2]", got)
	}
}
