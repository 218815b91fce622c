package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/goleak"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// Listen hands over only the names asked for; the other records count as
// processed, so the committed offsets reach the end of every partition.
func TestGroupNameFilter(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	group := brokertest.Name(t, "group")
	l := e.groupListener(group)
	em := e.emitter()
	e.emit(em,
		contracts.LocationCreated{ID: "loc-1", Halls: []contracts.Hall{{Name: "Main", Capacity: 10}}},
		contracts.EventCreated{ID: "ev-1", LocationID: "loc-1", Hall: "Main", Capacity: 10},
		booked("b-1", "ev-1", 1),
		contracts.EventCreated{ID: "ev-2", LocationID: "loc-1", Hall: "Main", Capacity: 10},
		booked("b-2", "ev-2", 1),
	)

	s := newSeen()
	stop := listen(t, l, s.handler, contracts.EventBookedName)
	want := []string{"b-1", "b-2"}
	brokertest.Eventually(t, wait, func() error { return diff(want, s.distinct()) })
	// The skipped records are marked as they are passed: wait until the
	// marks of all five are committed, then stop.
	brokertest.Eventually(t, wait, func() error { return e.committedAll(group) })
	stop()
	if err := l.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	for _, ev := range s.evs {
		if ev.EventName() != contracts.EventBookedName {
			t.Errorf("handler got %s %s; it asked for %s only", ev.EventName(), idOf(ev), contracts.EventBookedName)
		}
	}
	if n := len(e.records(e.dlq)); n != 0 {
		t.Errorf("%d records dead-lettered, want none", n)
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

// A group member stopped half-way commits what it handled; a new member of
// the same group after the restart gets exactly the rest plus what was
// emitted meanwhile: no loss, and no record handled twice.
func TestGroupResumesAfterRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	group := brokertest.Name(t, "group")
	em := e.emitter()
	first := ids("first", 60)
	for i, id := range first {
		e.emit(em, booked(id, fmt.Sprintf("ev-%d", i%9), i+1))
	}

	// The first member stops itself after 20 events; events already
	// received on other partitions may still be handled, and then count.
	a := e.groupListener(group)
	sa := newSeen()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- a.Listen(ctx, func(ctx context.Context, ev contracts.Event) error {
			sa.add(ev)
			if len(sa.snapshot()) == 20 {
				cancel()
			}
			return nil
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Listen = %v", err)
		}
	case <-time.After(wait):
		t.Fatalf("the first member did not stop; it handled %d", len(sa.snapshot()))
	}
	if err := a.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	handledA := sa.distinct()
	if len(handledA) >= len(first) {
		t.Fatalf("the first member handled all %d events; the test needs it to stop half-way", len(handledA))
	}

	second := ids("second", 20)
	for i, id := range second {
		e.emit(em, booked(id, fmt.Sprintf("ev-%d", i%9), 100+i))
	}
	b := e.groupListener(group)
	sb := newSeen()
	listen(t, b, sb.handler)
	all := append(slices.Clone(first), second...)
	brokertest.Eventually(t, wait, func() error {
		union := maps.Clone(handledA)
		maps.Copy(union, sb.distinct())
		return diff(all, union)
	})
	for id := range sb.distinct() {
		if handledA[id] {
			t.Errorf("%s was handled before the restart and again after it: its offset was not committed", id)
		}
	}
	t.Logf("before the restart %d events, after it %d", len(handledA), len(sb.distinct()))
}

// A replay listener reads from the oldest offset; CaughtUp closes once
// everything that was in the log at Listen is handled, and the listener
// then goes on with new events. Another replay listener reads it all again.
func TestReplayCaughtUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	em := e.emitter()
	before := ids("before", 30)
	for i, id := range before {
		e.emit(em, booked(id, fmt.Sprintf("ev-%d", i%10), i+1))
	}

	l := e.replayListener()
	s := newSeen()
	listen(t, l, s.handler)
	select {
	case <-l.CaughtUp():
	case <-time.After(wait):
		t.Fatalf("not caught up after %v: %s", wait, l.caught.describe())
	}
	// Caught up means handled, not merely fetched.
	if err := diff(before, s.distinct()); err != nil {
		t.Fatalf("at CaughtUp the handler had: %v", err)
	}
	// Per key, the log order.
	last := map[string]int{}
	for _, ev := range s.evs {
		b := ev.(*contracts.EventBooked)
		if b.Seats < last[b.EventID] {
			t.Errorf("key %s: %d after %d", b.EventID, b.Seats, last[b.EventID])
		}
		last[b.EventID] = b.Seats
	}

	after := ids("after", 5)
	for i, id := range after {
		e.emit(em, booked(id, fmt.Sprintf("ev-%d", i), 100+i))
	}
	all := append(slices.Clone(before), after...)
	brokertest.Eventually(t, wait, func() error { return diff(all, s.distinct()) })

	again := e.replayListener()
	s2 := newSeen()
	listen(t, again, s2.handler)
	select {
	case <-again.CaughtUp():
	case <-time.After(wait):
		t.Fatalf("second replay not caught up: %s", again.caught.describe())
	}
	if err := diff(all, s2.distinct()); err != nil {
		t.Errorf("second replay at CaughtUp: %v", err)
	}
}

// Replay starts at the oldest offset still stored, not at the literal 0:
// after the first records were deleted (as retention does), it still
// works, and CaughtUp still closes.
func TestReplayStartsAtOldestOffset(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	em := e.emitter(WithPartitions(1))
	all := ids("b", 10)
	for i, id := range all {
		e.emit(em, booked(id, "ev-1", i+1))
	}
	if err := e.adminClient().DeleteRecords(e.topic, map[int32]int64{0: 4}); err != nil {
		t.Fatalf("deleting the first 4 records: %v", err)
	}

	l := e.replayListener(WithPartitions(1))
	s := newSeen()
	listen(t, l, s.handler)
	select {
	case <-l.CaughtUp():
	case <-time.After(wait):
		t.Fatalf("not caught up: %s", l.caught.describe())
	}
	if got, want := s.snapshot(), all[4:]; !slices.Equal(got, want) {
		t.Errorf("replayed %v, want %v", got, want)
	}
}

// On an empty topic there is nothing to catch up with.
func TestReplayCaughtUpOnEmptyTopic(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.replayListener()
	listen(t, l, newSeen().handler)
	select {
	case <-l.CaughtUp():
	case <-time.After(wait):
		t.Fatalf("not caught up: %s", l.caught.describe())
	}
}

// Close called while a handler runs waits for it, and its record is
// committed.
func TestCloseWaitsForHandler(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	group := brokertest.Name(t, "group")
	l := e.groupListener(group)
	e.emit(e.emitter(), booked("slow", "ev-1", 1))

	entered, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	stop := listen(t, l, func(context.Context, contracts.Event) error {
		close(entered)
		<-release
		finished.Store(true)
		return nil
	})
	select {
	case <-entered:
	case <-time.After(wait):
		t.Fatal("the handler was not called")
	}
	// Let the handler go only a while after Close started: a Close that
	// does not wait returns in that while and fails the check below.
	time.AfterFunc(200*time.Millisecond, func() { close(release) })
	if err := l.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if !finished.Load() {
		t.Fatal("Close returned while the handler was still running")
	}
	stop()
	if err := e.committedAll(group); err != nil {
		t.Errorf("after Close: %v", err)
	}
}

// Listen refuses what it cannot do: a nil handler, an unknown name, a
// second call, a call after Close.
func TestListenErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.groupListener(brokertest.Name(t, "group"))
	ctx := context.Background()
	if err := l.Listen(ctx, nil); err == nil {
		t.Error("Listen(nil handler) = nil, want an error")
	}
	if err := l.Listen(ctx, newSeen().handler, "event.cancelled"); err == nil || !contains(err.Error(), "event.cancelled") {
		t.Errorf("Listen(unknown name) = %v, want an error naming it", err)
	}
	// Once the first Listen handles an event, it is surely running.
	s := newSeen()
	stop := listen(t, l, s.handler)
	e.emit(e.emitter(), booked("b-1", "ev-1", 1))
	brokertest.Eventually(t, wait, func() error { return diff([]string{"b-1"}, s.distinct()) })
	if err := l.Listen(ctx, newSeen().handler); err == nil || !contains(err.Error(), "already") {
		t.Errorf("second Listen = %v, want an error", err)
	}
	stop()
	if err := l.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	r := e.replayListener()
	r.Close()
	if err := r.Listen(ctx, newSeen().handler); !errors.Is(err, msgqueue.ErrClosed) {
		t.Errorf("Listen after Close = %v, want msgqueue.ErrClosed", err)
	}
}

// Cancelling Listen's context and closing leave no goroutine behind, in
// both modes and for the emitter. Not parallel: goroutines of other tests
// would look like leaks.
func TestNoGoroutineLeaks(t *testing.T) {
	e := newEnv(t)
	// Ignore what runs for the whole test binary: the embedded cluster and
	// the other tests (paused until this one ends), and go-metrics' meter
	// ticker, which sarama starts once and never stops.
	ignore := []goleak.Option{
		goleak.IgnoreCurrent(),
		goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"),
	}

	ctx := context.Background()
	em, err := NewEmitter(ctx, e.brokers, e.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := em.Emit(ctx, booked(fmt.Sprintf("b-%d", i), "ev-1", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	group, err := NewGroupListener(ctx, e.brokers, brokertest.Name(t, "group"), contracts.Names(), e.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	replay, err := NewReplayListener(ctx, e.brokers, contracts.Names(), e.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []*Listener{group, replay} {
		s := newSeen()
		lctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- l.Listen(lctx, s.handler) }()
		brokertest.Eventually(t, wait, func() error {
			if n := len(s.distinct()); n != 5 {
				return fmt.Errorf("handled %d of 5", n)
			}
			return nil
		})
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Listen after cancel = %v, want nil", err)
			}
		case <-time.After(wait):
			t.Fatal("Listen did not return after its context was cancelled")
		}
		if err := l.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
	}
	if err := em.Close(); err != nil {
		t.Errorf("emitter Close = %v", err)
	}
	goleak.VerifyNone(t, ignore...)
}

// In group mode CaughtUp closes once the partitions of the first session
// are handled up to where they ended at assignment; a member that resumes
// from committed offsets at the end is caught up without handling anything.
func TestGroupCaughtUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	group := brokertest.Name(t, "group")
	em := e.emitter()
	want := ids("b", 20)
	for i, id := range want {
		e.emit(em, booked(id, fmt.Sprintf("ev-%d", i%5), i+1))
	}

	first := e.groupListener(group)
	s := newSeen()
	stop := listen(t, first, s.handler)
	select {
	case <-first.CaughtUp():
	case <-time.After(wait):
		t.Fatalf("not caught up: %s", first.caught.describe())
	}
	if err := diff(want, s.distinct()); err != nil {
		t.Fatalf("at CaughtUp the handler had: %v", err)
	}
	stop()
	if err := first.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}

	second := e.groupListener(group)
	s2 := newSeen()
	listen(t, second, s2.handler)
	select {
	case <-second.CaughtUp():
	case <-time.After(wait):
		t.Fatalf("the resumed member is not caught up: %s", second.caught.describe())
	}
	if got := s2.snapshot(); len(got) != 0 {
		t.Errorf("the resumed member handled %v again", got)
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
