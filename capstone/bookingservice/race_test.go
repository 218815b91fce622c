package bookingservice

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/labs/brokertest"
)

// race sends n single-seat booking requests for event id at once, spread
// over the servers, and counts the answers by status.
func race(t *testing.T, servers []*servicetest.Server, id string, n int) map[int]int {
	t.Helper()
	var (
		mu       sync.Mutex
		statuses = map[int]int{}
		wg       sync.WaitGroup
		start    = make(chan struct{})
	)
	for i := range n {
		wg.Go(func() {
			<-start
			status, body, err := servers[i%len(servers)].Try("POST", "/events/"+id+"/bookings", fmt.Sprintf(`{"seats":1,"user_id":"u%d"}`, i))
			if err != nil || (status != 201 && status != 409) {
				t.Errorf("request %d: %d %s %v", i, status, body, err)
			}
			mu.Lock()
			statuses[status]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return statuses
}

// TestLastSeatRace: many concurrent requests for the last seats sell
// exactly the capacity, on every store.
func TestLastSeatRace(t *testing.T) {
	const capacity, requests = 50, 200
	forEachStore(t, func(t *testing.T, f *fixture) {
		f.announce(t, "ev", capacity)
		began := time.Now()
		statuses := race(t, []*servicetest.Server{f.srv}, "ev", requests)
		took := time.Since(began)
		f.checkSoldOut(t, "ev", capacity, statuses)
		t.Logf("%d requests, %d sold (201), %d refused (409), capacity %d, in %v",
			requests, statuses[201], statuses[409], capacity, took.Round(time.Millisecond))
	})
}

// checkSoldOut requires exactly capacity seats sold, in every count.
func (f *fixture) checkSoldOut(t *testing.T, id string, capacity int, statuses map[int]int) {
	t.Helper()
	if statuses[201] != capacity {
		t.Errorf("%d bookings succeeded, want exactly the capacity %d (statuses %v)", statuses[201], capacity, statuses)
	}
	if got := f.booked(t, id); got != capacity {
		t.Errorf("booked %d, want %d", got, capacity)
	}
	bs, err := f.store.Bookings(context.Background(), id)
	if err != nil || len(bs) != capacity {
		t.Errorf("%d bookings stored, want %d (%v)", len(bs), capacity, err)
	}
}

// TestTwoInstancesSharePostgres: two BookingService instances on one
// PostgreSQL database and one queue sell exactly the capacity between them,
// and each one's event.booked, heard by either, changes nothing.
func TestTwoInstancesSharePostgres(t *testing.T) {
	const capacity, requests = 50, 200
	dsn := servicetest.PostgresDSN(t)
	bus := newBus()
	// Groups smaller than the capacity: one group of up to DefaultGroup
	// requests could take every seat before the other instance's first.
	a := newFixture(t, dsn, bus, Options{Group: 8})
	b := newFixture(t, dsn, bus, Options{Group: 8})
	a.announce(t, "ev", capacity)
	brokertest.Eventually(t, 5*time.Second, func() error {
		_, err := b.store.Show(context.Background(), "ev")
		return err
	})

	began := time.Now()
	statuses := race(t, []*servicetest.Server{a.srv, b.srv}, "ev", requests)
	took := time.Since(began)
	a.checkSoldOut(t, "ev", capacity, statuses)
	t.Logf("2 instances: %d requests, %d sold (201), %d refused (409), capacity %d, in %v",
		requests, statuses[201], statuses[409], capacity, took.Round(time.Millisecond))

	// Both emitted their share; once the queue is drained (both listeners
	// compete for it) every event.booked was heard and nothing changed.
	brokertest.Eventually(t, 5*time.Second, func() error {
		if n := len(a.em.Emitted()) + len(b.em.Emitted()); n != capacity {
			return fmt.Errorf("%d event.booked emitted, want %d", n, capacity)
		}
		if ua, ub := servicetest.Unsent(t, a.store.Outbox()), servicetest.Unsent(t, b.store.Outbox()); ua+ub != 0 {
			return fmt.Errorf("%d unsent", ua+ub)
		}
		return nil
	})
	if len(a.em.Emitted()) == 0 || len(b.em.Emitted()) == 0 {
		t.Errorf("one instance sold nothing: %d and %d", len(a.em.Emitted()), len(b.em.Emitted()))
	}
	a.drain(t)
	b.drain(t)
	a.checkSoldOut(t, "ev", capacity, statuses)
}
