package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
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
		contracts.LocationCreated{ID: "loc-1", Name: "Arena", Halls: []contracts.Hall{{Name: "Main", Capacity: 10}}},
		contracts.EventCreated{ID: "ev-1", LocationID: "loc-1", Hall: "Main", Capacity: 10},
		booked("b-1", "ev-1", 1),
		contracts.EventCreated{ID: "ev-2", LocationID: "loc-1", Hall: "Main", Capacity: 10},
		booked("b-2", "ev-2", 1),
	)

	s := newSeen()
	stop := listen(t, l, s.handler, contracts.EventBookedName)
	want := []string{"b-1", "b-2"}
	brokertest.Eventually(t, wait, func() error { return s.sameIDs(want) })
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

// A group member stopped half-way commits what it handled; a new member of
// the same group after the restart gets exactly the rest plus what was
// emitted meanwhile: no loss, and no record handled twice.
func TestGroupResumesAfterRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	group := brokertest.Name(t, "group")
	em := e.emitter()
	first := ids("first", 60)
	e.emitBookings(em, first, 9, 1)

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
	e.emitBookings(em, second, 9, 100)
	b := e.groupListener(group)
	sb := newSeen()
	listen(t, b, sb.handler)
	all := append(slices.Clone(first), second...)
	brokertest.Eventually(t, wait, func() error {
		union := maps.Clone(handledA)
		maps.Copy(union, sb.distinct())
		return brokertest.MatchIDs(slices.Collect(maps.Keys(union)), all)
	})
	for id := range sb.distinct() {
		if handledA[id] {
			t.Errorf("%s was handled before the restart and again after it: its offset was not committed", id)
		}
	}
	t.Logf("before the restart %d events, after it %d", len(handledA), len(sb.distinct()))
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
	brokertest.Receive(t, entered, wait, "the handler was not called")
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

// A replay listener stops within about one fetch wait of its context's
// end, whatever its number of partitions: each partition consumer waits
// for the fetch in flight (up to Consumer.MaxWaitTime, one second here)
// before it lets go, and closed one after the other six of them held
// Listen (and so a service's Ctrl-C) for four seconds.
func TestReplayStopsWithinOneFetchWait(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const maxWait = time.Second
	l := e.replayListener(WithPartitions(6), WithSaramaConfig(func(c *sarama.Config) { c.Consumer.MaxWaitTime = maxWait }))
	e.emit(e.emitter(WithPartitions(6)), booked("a", "ev-1", 1))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Listen(ctx, newSeen().handler) }()
	awaitCaughtUp(t, l)
	start := time.Now()
	cancel()
	if err := brokertest.Receive(t, done, wait, "Listen did not return"); err != nil {
		t.Errorf("Listen = %v", err)
	}
	if took := time.Since(start); took > 5*maxWait/2 {
		t.Errorf("Listen returned %v after its context ended; want about one fetch wait (%v)", took.Round(time.Millisecond), maxWait)
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
	brokertest.Eventually(t, wait, func() error { return s.sameIDs([]string{"b-1"}) })
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
		stop := listen(t, l, s.handler)
		brokertest.Eventually(t, wait, func() error {
			if n := len(s.distinct()); n != 5 {
				return fmt.Errorf("handled %d of 5", n)
			}
			return nil
		})
		stop() // checks that Listen returns nil once cancelled
		if err := l.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
	}
	if err := em.Close(); err != nil {
		t.Errorf("emitter Close = %v", err)
	}
	goleak.VerifyNone(t, ignore...)
}

// A replay listener reads from the oldest offset; CaughtUp closes once
// everything that was in the log at Listen is handled, and the listener
// then goes on with new events. Another replay listener reads it all again.
func TestReplayCaughtUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	em := e.emitter()
	before := ids("before", 30)
	e.emitBookings(em, before, 10, 1)

	l := e.replayListener()
	s := newSeen()
	listen(t, l, s.handler)
	awaitCaughtUp(t, l)
	// Caught up means handled, not merely fetched.
	if err := s.sameIDs(before); err != nil {
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
	e.emitBookings(em, after, len(after), 100)
	all := append(slices.Clone(before), after...)
	brokertest.Eventually(t, wait, func() error { return s.sameIDs(all) })

	again := e.replayListener()
	s2 := newSeen()
	listen(t, again, s2.handler)
	awaitCaughtUp(t, again)
	if err := s2.sameIDs(all); err != nil {
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
	e.emitBookings(em, all, 1, 1)
	if err := e.adminClient().DeleteRecords(e.topic, map[int32]int64{0: 4}); err != nil {
		t.Fatalf("deleting the first 4 records: %v", err)
	}

	l := e.replayListener(WithPartitions(1))
	s := newSeen()
	listen(t, l, s.handler)
	awaitCaughtUp(t, l)
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
	awaitCaughtUp(t, l)
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
	e.emitBookings(em, want, 5, 1)

	first := e.groupListener(group)
	s := newSeen()
	stop := listen(t, first, s.handler)
	awaitCaughtUp(t, first)
	if err := s.sameIDs(want); err != nil {
		t.Fatalf("at CaughtUp the handler had: %v", err)
	}
	stop()
	if err := first.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}

	second := e.groupListener(group)
	s2 := newSeen()
	listen(t, second, s2.handler)
	awaitCaughtUp(t, second)
	if got := s2.snapshot(); len(got) != 0 {
		t.Errorf("the resumed member handled %v again", got)
	}
}

// Records deleted under a running replay (retention, DeleteRecords) stop
// sarama's partition consumer with ErrOffsetOutOfRange. The replay goes on
// from the oldest record still stored instead of failing Listen, which
// stopped the whole service.
func TestReplayGoesOnPastRecordsDeletedUnderIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	em := e.emitter(WithPartitions(1))
	const n, cut = 3000, 2500 // more than the replay holds decoded ahead
	all := ids("d", n)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				if err := em.Emit(context.Background(), booked(all[i], "ev-0", i%1000+1)); err != nil {
					t.Errorf("Emit: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()

	// Small fetches and buffers, so that the replay has read little of
	// the log when the handler stops at its fifth record.
	small := WithSaramaConfig(func(c *sarama.Config) {
		c.ChannelBufferSize = 8
		c.Consumer.Fetch.Default = 1024
	})
	l := e.replayListener(WithPartitions(1), small)
	s := newSeen()
	gate := make(chan struct{})
	var calls atomic.Int64
	listen(t, l, func(ctx context.Context, ev contracts.Event) error {
		if calls.Add(1) == 5 {
			<-gate
		}
		return s.handler(ctx, ev)
	})
	brokertest.Eventually(t, wait, func() error {
		if calls.Load() < 5 {
			return fmt.Errorf("%d records handed over, want the fifth held", calls.Load())
		}
		return nil
	})
	if err := e.adminClient().DeleteRecords(e.topic, map[int32]int64{0: cut}); err != nil {
		t.Fatalf("deleting the records below %d: %v", cut, err)
	}
	close(gate)

	awaitCaughtUp(t, l)
	// Which records survived depends on the emit order: what matters is
	// that every record still stored is applied.
	got := s.distinct()
	var missing []string
	for _, m := range e.records(e.topic) {
		name, ev, err := contracts.Unwrap(m.Value)
		if err != nil || name != contracts.EventBookedName {
			t.Fatalf("record %d: %v", m.Offset, err)
		}
		if id := ev.(*contracts.EventBooked).ID; !got[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d records still stored were not applied, e.g. %v", len(missing), missing[:min(5, len(missing))])
	}
	if err := l.Health(context.Background()); err != nil {
		t.Errorf("Health after the deletion: %v", err)
	}
}

// Partitions added to the topic while a listener runs are read too, once
// the client's metadata shows them (Metadata.RefreshFrequency; 30 s by
// default, 200 ms here). A replay never read them (their events reached a
// running instance only after a restart), and a group only after sarama's
// default of 10 minutes.
func TestNewPartitionsAreRead(t *testing.T) {
	t.Parallel()
	fast := WithSaramaConfig(func(c *sarama.Config) { c.Metadata.RefreshFrequency = 200 * time.Millisecond })
	for _, mode := range []string{"replay", "group"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.emitter(WithPartitions(1)) // creates the topic with one partition
			var l *Listener
			if mode == "replay" {
				l = e.replayListener(WithPartitions(1), fast)
			} else {
				l = e.groupListener(brokertest.Name(t, "group"), WithPartitions(1), fast)
			}
			s := newSeen()
			listen(t, l, s.handler)
			awaitCaughtUp(t, l)

			if err := e.adminClient().CreatePartitions(e.topic, 3, nil, false); err != nil {
				t.Fatalf("adding partitions: %v", err)
			}
			em := e.emitter(WithPartitions(1)) // a new client: it sees three
			want := ids("p", 30)
			e.emitBookings(em, want, len(want), 1) // 30 keys, over the three partitions
			parts := map[int32]int{}
			for _, m := range e.records(e.topic) {
				parts[m.Partition]++
			}
			if len(parts) < 2 {
				t.Fatalf("records per partition %v: want some on the new partitions", parts)
			}
			brokertest.Eventually(t, wait, func() error { return s.sameIDs(want) })
		})
	}
}

// A replay whose client has no background metadata refresh (sarama's
// Metadata.RefreshFrequency 0) still works; its partition watcher panicked
// on a ticker of 0.
func TestReplayWithoutBackgroundRefresh(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	em := e.emitter(WithPartitions(1))
	all := ids("r", 3)
	e.emitBookings(em, all, 1, 1)
	l := e.replayListener(WithPartitions(1), WithSaramaConfig(func(c *sarama.Config) { c.Metadata.RefreshFrequency = 0 }))
	s := newSeen()
	listen(t, l, s.handler)
	awaitCaughtUp(t, l)
	if err := s.sameIDs(all); err != nil {
		t.Error(err)
	}
}

// TestRecordsWithoutTheContractsKeyAreApplied: kafka-python's default key
// is null, and kcat writes none without -K: another instance written with
// them sells bookings whose records carry no key, or another one. They
// are applied, wherever they landed: dead-lettering them would leave seats
// another instance sold uncounted here, and a booking that overtakes its
// event's event.created is kept until the event comes (the stores'
// placeholder). Only the order between an entity's events is lost, which
// the contract's key exists for.
func TestRecordsWithoutTheContractsKeyAreApplied(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.emitter(WithPartitions(1)) // creates the topic
	noKey, err := contracts.Wrap(booked("no-key", "ev-1", 1))
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := contracts.Wrap(booked("other-key", "ev-1", 2))
	if err != nil {
		t.Fatal(err)
	}
	p, err := sarama.NewSyncProducer(e.brokers, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, m := range []*sarama.ProducerMessage{
		{Topic: e.topic, Value: sarama.ByteEncoder(noKey)},
		{Topic: e.topic, Key: sarama.StringEncoder("user-42"), Value: sarama.ByteEncoder(otherKey)},
	} {
		if _, _, err := p.SendMessage(m); err != nil {
			t.Fatalf("producing: %v", err)
		}
	}
	l := e.replayListener(WithPartitions(1))
	s := newSeen()
	listen(t, l, s.handler)
	awaitCaughtUp(t, l)
	if got := s.snapshot(); !slices.Equal(got, []string{"no-key", "other-key"}) {
		t.Errorf("applied %v, want [no-key other-key]", got)
	}
}
