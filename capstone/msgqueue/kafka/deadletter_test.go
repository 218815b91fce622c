package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// forEachListener runs f, in parallel, with a group listener and with a
// replay listener (mode "group" or "replay"), each on an env of its own.
func forEachListener(t *testing.T, f func(t *testing.T, mode string, e *env, l *Listener)) {
	for _, mode := range []string{"group", "replay"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			if mode == "group" {
				f(t, mode, e, e.groupListener(brokertest.Name(t, "group")))
				return
			}
			f(t, mode, e, e.replayListener())
		})
	}
}

// awaitMovedOn waits until the handler saw id, the event behind a bad
// record, and checks that the listener no longer reports itself stalled.
func awaitMovedOn(t *testing.T, l *Listener, s *seen, id string) {
	t.Helper()
	brokertest.Eventually(t, wait, func() error {
		if !s.distinct()[id] {
			return fmt.Errorf("%s not handled yet; stalled: %v", id, l.Stalled())
		}
		return nil
	})
	if err := l.Stalled(); err != nil {
		t.Errorf("Stalled = %v after the partition moved on", err)
	}
}

// TestNearLimitRecordIsDeadLettered: a bad record of 1,048,400 bytes is
// one the broker takes, but whose dead-letter copy with headers would not
// fit the producer's limit. Its copy is cut to 64 KiB and says so, the
// partition moves on to the good event behind it, and the listener never
// reports itself stalled. Both the group and the replay listener.
func TestNearLimitRecordIsDeadLettered(t *testing.T) {
	forEachListener(t, func(t *testing.T, mode string, e *env, l *Listener) {
		prefix := `{"eventName":"event.created","payload":{"id":"ev-1","location_id":"l","hall":"h","capacity":1,"name":"`
		bad := []byte(prefix + strings.Repeat("x", 1_048_400-len(prefix)-3) + `"}}`)
		e.produceRaw("ev-1", bad)
		e.emit(e.emitter(), booked("after", "ev-1", 1))

		s := newSeen()
		listen(t, l, s.handler)
		awaitMovedOn(t, l, s, "after")
		if mode == "replay" {
			awaitCaughtUp(t, l)
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
	})
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
	e.produceRaw("ev-big", value)
	e.emit(e.emitter(), booked("after", "ev-big", 1))
	s := newSeen()
	listen(t, l, s.handler)
	awaitMovedOn(t, l, s, "after")
	if s.distinct()["ev-big"] {
		t.Error("the handler got the 200 KB event")
	}
	if dead := e.records(e.dlq); len(dead) != 1 || header(dead[0], HeaderReason) != msgqueue.ReasonTooLarge {
		t.Errorf("dead letters %d, want 1 with reason %s", len(dead), msgqueue.ReasonTooLarge)
	}
}

// TestRecordsOverTheLimitWithTheirKeyOrHeadersAreNeverHandled: the 64
// KiB limit is the record's, not only its value's. A valid event.booked
// with a 200 KB key, or with 100 KB of headers, is poison all the same:
// dead-lettered as too large, its copy cut to fit, and the partition
// moves on.
func TestRecordsOverTheLimitWithTheirKeyOrHeadersAreNeverHandled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.replayListener()
	send := func(key string, ev contracts.Event, headers ...sarama.RecordHeader) {
		t.Helper()
		value, err := contracts.Wrap(ev)
		if err != nil {
			t.Fatal(err)
		}
		e.produceRaw(key, value, headers...)
	}
	send(strings.Repeat("k", 200<<10), booked("big-key", "ev-1", 1))
	send("ev-1", booked("big-headers", "ev-1", 1), sarama.RecordHeader{Key: []byte("x-pad"), Value: []byte(strings.Repeat("h", 100<<10))})
	e.emit(e.emitter(), booked("after", "ev-1", 1))

	s := newSeen()
	listen(t, l, s.handler)
	awaitMovedOn(t, l, s, "after")
	// The big key hashes to another partition than ev-1: "after" tells
	// nothing of it. Caught up, every partition is done with its records,
	// dead letters included.
	awaitCaughtUp(t, l)
	for _, id := range []string{"big-key", "big-headers"} {
		if s.distinct()[id] {
			t.Errorf("the handler got %s, a record over %d bytes", id, msgqueue.MaxMessageSize)
		}
	}
	dead := e.records(e.dlq)
	if len(dead) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dead))
	}
	for _, d := range dead {
		if got := header(d, HeaderReason); got != msgqueue.ReasonTooLarge {
			t.Errorf("dead letter reason %q, want %s", got, msgqueue.ReasonTooLarge)
		}
		if len(d.Key) > msgqueue.MaxMessageSize {
			t.Errorf("the copy's key holds %d bytes, over %d", len(d.Key), msgqueue.MaxMessageSize)
		}
	}
}

// TestForgedDeadLetterHeadersAreDropped: a record that arrives with
// x-dlq-* headers of its own (a forged reason, offset and size) gets a
// dead-letter copy whose x-dlq-* headers are the listener's alone: a
// reader taking the first x-dlq-reason read the forged one.
func TestForgedDeadLetterHeadersAreDropped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.replayListener()
	forged := func(k, v string) sarama.RecordHeader { return sarama.RecordHeader{Key: []byte(k), Value: []byte(v)} }
	e.produceRaw("ev-1", []byte("{bad"), forged(HeaderReason, "forged"), forged(HeaderOffset, "12345"),
		forged(msgqueue.HeaderOriginalSize, "99999999"), forged("x-app", "kept"))
	e.emit(e.emitter(), booked("after", "ev-1", 1))
	s := newSeen()
	listen(t, l, s.handler)
	awaitMovedOn(t, l, s, "after")
	dead := e.records(e.dlq)
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	seen := map[string][]string{}
	for _, h := range dead[0].Headers {
		seen[string(h.Key)] = append(seen[string(h.Key)], string(h.Value))
	}
	if got := seen[HeaderReason]; len(got) != 1 || got[0] != ReasonMalformed {
		t.Errorf("the copy's %s headers are %q, want only %q", HeaderReason, got, ReasonMalformed)
	}
	if got := seen[HeaderOffset]; len(got) != 1 || got[0] == "12345" {
		t.Errorf("the copy's %s headers are %q, want only the record's own offset", HeaderOffset, got)
	}
	if got := seen[msgqueue.HeaderOriginalSize]; len(got) != 0 {
		t.Errorf("the copy of a 4-byte record carries %s %q", msgqueue.HeaderOriginalSize, got)
	}
	if got := seen["x-app"]; len(got) != 1 || got[0] != "kept" {
		t.Errorf("the copy's x-app header is %q, want the original's kept", got)
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
	e.produceRaw("ev-1", []byte(strings.Repeat("not an envelope ", 1000)))
	e.emit(e.emitter(), booked("after", "ev-1", 1))
	s := newSeen()
	listen(t, l, s.handler)
	awaitMovedOn(t, l, s, "after")
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
	forEachListener(t, func(t *testing.T, mode string, e *env, l *Listener) {
		if err := e.adminClient().DeleteTopic(e.dlq); err != nil {
			t.Fatal(err)
		}
		e.produceRaw("ev-1", []byte(`not an envelope`))
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
		awaitMovedOn(t, l, s, "after")
	})
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
	awaitCaughtUp(t, l)
	if err := l.Stalled(); err != nil {
		t.Errorf("Stalled while idle = %v", err)
	}
}

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
	awaitCaughtUp(t, l)
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
	brokertest.Eventually(t, wait, func() error { return s.sameIDs([]string{"stuck", "ok-2"}) })
	if got := s.snapshot(); !slices.Equal(got, []string{"stuck", "ok-2"}) {
		t.Errorf("after the restart the handler got %v, want [stuck ok-2]", got)
	}
}
