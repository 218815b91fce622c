package msgqueuetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"example.com/myevents/contracts"
)

// roundTrip: one event of every contract type arrives as the same Go type
// with the same JSON.
func (s *suite) roundTrip(t *testing.T) {
	_, l, em := s.open(t, contracts.Names()...)

	// Emit one event of every type.
	sent := map[string]contracts.Event{}
	want := map[string]bool{}
	for _, name := range contracts.Names() {
		ev := sample(name, "rt-"+name)
		sent[EventID(ev)] = ev
		want[EventID(ev)] = true
		emitAll(t, em, s.tr.Timeout, ev)
	}

	// Receive them and compare type and JSON.
	rec := newRecorder(nil)
	listen(t, l, rec.handle)
	rec.waitAll(t, s.tr.Timeout, want)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, got := range rec.order {
		exp := sent[EventID(got)]
		if exp == nil {
			continue
		}
		if reflect.TypeOf(got) != reflect.TypeOf(exp) {
			t.Errorf("%s arrived as %T, want %T", exp.EventName(), got, exp)
		}
		gotJSON, _ := json.Marshal(got)
		expJSON, _ := json.Marshal(exp)
		if !bytes.Equal(gotJSON, expJSON) {
			t.Errorf("%s changed on the way:\n got %s\nwant %s", exp.EventName(), gotJSON, expJSON)
		}
	}
}

// nameFilter: Listen with one name hands only that name to the handler.
func (s *suite) nameFilter(t *testing.T) {
	_, l, em := s.open(t, contracts.Names()...)

	// Emit every type about one entity, so that all of them share a
	// partition key and stay in order; the last booking is the fence that
	// proves everything before it was consumed.
	const key = "filter-entity"
	loc := &contracts.LocationCreated{ID: key, Name: "Hall"}
	created := &contracts.EventCreated{ID: key, LocationID: "loc-1", Hall: "Main", Capacity: 10}
	want := map[string]bool{}
	var evs []contracts.Event
	evs = append(evs, loc, created)
	for i := 1; i <= 5; i++ {
		b := booked(fmt.Sprintf("filter-b%02d", i), key, i)
		evs = append(evs, b)
		want[b.ID] = true
	}
	evs = append(evs, loc, created)
	fence := booked("filter-fence", key, 6)
	evs = append(evs, fence)
	want[fence.ID] = true
	emitAll(t, em, s.tr.Timeout, evs...)

	// Listen for bookings only.
	rec := newRecorder(nil)
	listen(t, l, rec.handle, contracts.EventBookedName)
	rec.waitAll(t, s.tr.Timeout, want)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	for name, n := range rec.names {
		if name != contracts.EventBookedName {
			t.Errorf("the handler listening for %s only was called %d times with %s", contracts.EventBookedName, n, name)
		}
	}
}

// perKeyOrder: events emitted one after another for one key arrive in order.
func (s *suite) perKeyOrder(t *testing.T) {
	_, l, em := s.open(t, contracts.EventBookedName)

	// Emit a sequence per key, the keys concurrently.
	const keys, perKey = 4, 25
	want := map[string]bool{}
	var wg sync.WaitGroup
	for k := range keys {
		key := fmt.Sprintf("order-key-%d", k)
		var evs []contracts.Event
		for i := 1; i <= perKey; i++ {
			b := booked(fmt.Sprintf("order-%d-%03d", k, i), key, i)
			evs = append(evs, b)
			want[b.ID] = true
		}
		wg.Go(func() { emitAll(t, em, s.tr.Timeout, evs...) })
	}
	wg.Wait()

	rec := newRecorder(nil)
	listen(t, l, rec.handle)
	rec.waitAll(t, s.tr.Timeout, want)

	// Check that the first acceptances per key come in sequence order.
	rec.mu.Lock()
	defer rec.mu.Unlock()
	last := map[string]int{}
	for _, ev := range rec.order {
		b := ev.(*contracts.EventBooked)
		if b.Seats != last[b.EventID]+1 {
			t.Errorf("key %s: event %d arrived after event %d", b.EventID, b.Seats, last[b.EventID])
		}
		last[b.EventID] = b.Seats
	}
}

// restart: broken connections and a listener restart lose nothing that was
// confirmed.
func (s *suite) restart(t *testing.T) {
	env, l1, em := s.open(t, contracts.EventBookedName)

	// The handler can be told to hold the delivery it is processing, so
	// that the connections break while the listener has deliveries in
	// flight (this one, and the ones prefetched behind it).
	var holdNext atomic.Bool
	holding := make(chan struct{})
	release := make(chan struct{})
	rec := newRecorder(func(contracts.Event, int) error {
		if holdNext.CompareAndSwap(true, false) {
			close(holding)
			<-release
		}
		return nil
	})

	// Keep four goroutines emitting, never more than window events ahead
	// of the consumer (except while the connections are being broken, so
	// that emits are in flight when they break), until told to stop.
	const emitters, window = 4, 100
	var (
		ungated      atomic.Bool
		stopEmitting = make(chan struct{})
		stopOnce     sync.Once
		attempted    atomic.Int64
		mu           sync.Mutex
		confirmed    = map[string]bool{}
		wg           sync.WaitGroup
	)
	stopped := func() bool {
		select {
		case <-stopEmitting:
			return true
		default:
			return false
		}
	}
	stop := func() {
		stopOnce.Do(func() { close(stopEmitting) })
		wg.Wait()
	}
	defer stop()
	for g := range emitters {
		wg.Go(func() {
			for i := 0; ; i++ {
				// Wait for the consumer to catch up.
				err := poll(t.Context(), 2*s.tr.Timeout, func() error {
					mu.Lock()
					ahead := len(confirmed) - rec.uniqueAccepted()
					mu.Unlock()
					if ahead >= window && !ungated.Load() && !stopped() {
						return fmt.Errorf("%d events ahead of the consumer", ahead)
					}
					return nil
				})
				if stopped() {
					return
				}
				if err != nil {
					t.Errorf("emitter %d: the consumer never caught up: %v", g, err)
					return
				}
				b := booked(fmt.Sprintf("restart-g%d-%05d", g, i), fmt.Sprintf("restart-key-%d", i%8), 1)
				attempted.Add(1)
				ctx, cancel := context.WithTimeout(t.Context(), 2*s.tr.Timeout)
				err = em.Emit(ctx, b)
				cancel()
				if err != nil {
					t.Errorf("emitting %s across the outage: %v", b.ID, err)
					return
				}
				mu.Lock()
				confirmed[b.ID] = true
				mu.Unlock()
			}
		})
	}
	run1 := listen(t, l1, rec.handle)

	// progress waits until the consumer accepted n more events.
	progress := func(phase string, n int) {
		t.Helper()
		target := rec.uniqueAccepted() + n
		err := poll(t.Context(), s.tr.Timeout, func() error {
			if got := rec.uniqueAccepted(); got < target {
				return fmt.Errorf("%s: %d events accepted, waiting for %d", phase, got, target)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	progress("before the outage", 150)

	// Break the connections while the handler holds a delivery.
	if env.Interrupt != nil {
		holdNext.Store(true)
		select {
		case <-holding:
		case <-time.After(s.tr.Timeout):
			t.Fatal("the handler was not called again within the timeout")
		}
		ungated.Store(true)
		err := env.Interrupt(t.Context())
		ungated.Store(false)
		close(release)
		if err != nil {
			t.Fatalf("interrupting the connections: %v", err)
		}
		progress("after the outage", 150)
	}

	// Restart the listener: close it and build a new one for the service.
	if err := l1.Close(); err != nil {
		t.Errorf("closing the first listener: %v", err)
	}
	if err := run1.stop(s.tr.Timeout); err != nil {
		t.Errorf("the first Listen returned %v after Close, want nil", err)
	}
	l2 := newListener(t, env, contracts.EventBookedName)
	listen(t, l2, rec.handle)
	progress("after the restart", 150)

	// Stop emitting; every confirmed event must arrive.
	stop()
	mu.Lock()
	want := make(map[string]bool, len(confirmed))
	for id := range confirmed {
		want[id] = true
	}
	mu.Unlock()
	rec.waitAll(t, 2*s.tr.Timeout, want)
	calls, accepted := rec.totals()
	t.Logf("%s restart: emitted %d, confirmed %d, received %d unique, %d handler calls (%d duplicates), interrupted=%v",
		s.tr.Name, attempted.Load(), len(want), rec.uniqueAccepted(), calls, accepted-rec.uniqueAccepted(), env.Interrupt != nil)
}

// concurrentEmit: 50 goroutines emit at once.
func (s *suite) concurrentEmit(t *testing.T) {
	_, l, em := s.open(t, contracts.EventBookedName)

	const goroutines, each = 50, 20
	want := map[string]bool{}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := range goroutines {
		var evs []contracts.Event
		for i := range each {
			b := booked(fmt.Sprintf("conc-g%02d-%02d", g, i), fmt.Sprintf("conc-key-%d", g), i+1)
			evs = append(evs, b)
			want[b.ID] = true
		}
		wg.Go(func() {
			<-start
			emitAll(t, em, s.tr.Timeout, evs...)
		})
	}
	close(start)
	wg.Wait()

	rec := newRecorder(nil)
	listen(t, l, rec.handle)
	rec.waitAll(t, s.tr.Timeout, want)
}
