package outbox_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"example.com/myevents/capstone/internal/outbox"
	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/capstone/msgqueue/memory"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// pickyEmitter refuses the events whose IDs it is told to, a given number
// of times each, and records what it took, in order.
type pickyEmitter struct {
	mu      sync.Mutex
	refuse  map[string]int
	emitted []string
}

func (e *pickyEmitter) Emit(_ context.Context, ev contracts.Event) error {
	id := ev.(*contracts.EventBooked).ID
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.refuse[id] > 0 {
		e.refuse[id]--
		return servicetest.ErrRefused
	}
	e.emitted = append(e.emitted, id)
	return nil
}

func (e *pickyEmitter) Health(context.Context) error { return nil }
func (e *pickyEmitter) Close() error                 { return nil }

func (e *pickyEmitter) sent() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.emitted)
}

// awaitSent waits until the emitter took n events.
func awaitSent(t *testing.T, em *pickyEmitter, n int) {
	t.Helper()
	brokertest.Eventually(t, 5*time.Second, func() error {
		if got := em.sent(); len(got) < n {
			return fmt.Errorf("sent %v, waiting for %d", got, n)
		}
		return nil
	})
}

// publishB1B2 publishes b1, then b2, through an emitter that refuses each
// the given number of times, and waits until both were sent.
func publishB1B2(t *testing.T, refuse map[string]int, opt outbox.Options) (*fakeStore, *pickyEmitter, *outbox.Publisher) {
	t.Helper()
	store := newFakeStore()
	em := &pickyEmitter{refuse: refuse}
	p := outbox.NewPublisher(store, em, opt)
	t.Cleanup(func() { _ = p.Close() })
	for i, id := range []string{"b1", "b2"} {
		msg := store.add(int64(i+1), booked(id), time.Now().Add(outbox.Grace))
		if err := p.Publish(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
	awaitSent(t, em, 2)
	return store, em, p
}

// TestRetriedEventIsNotOvertakenByTheRelay is the order the relay used to
// break: two events refused by the broker, the first refused once more
// when retried; its backoff grows, the second one's comes due first. The
// relay must still send the first one first.
func TestRetriedEventIsNotOvertakenByTheRelay(t *testing.T) {
	opt := fast()
	opt.MinBackoff, opt.MaxBackoff = 20*time.Millisecond, time.Second
	_, em, _ := publishB1B2(t, map[string]int{"b1": 3, "b2": 1}, opt)
	if got := em.sent(); !slices.Equal(got, []string{"b1", "b2"}) {
		t.Errorf("sent %v, want [b1 b2]: a retried event was overtaken", got)
	}
}

// TestRetriedEventIsNotOvertakenByANewRequest: once an event waits to be
// retried, the next request's event does not jump the queue when the
// broker is back; it goes to the relay, after the older one.
func TestRetriedEventIsNotOvertakenByANewRequest(t *testing.T) {
	opt := fast()
	opt.MinBackoff = 200 * time.Millisecond // b1 waits while b2 is published
	store, em, p := publishB1B2(t, map[string]int{"b1": 1}, opt)
	if got := em.sent(); !slices.Equal(got, []string{"b1", "b2"}) {
		t.Errorf("sent %v, want [b1 b2]: the new request overtook the retried event", got)
	}
	// Caught up, the requests emit by themselves again.
	brokertest.Eventually(t, 5*time.Second, func() error {
		msg := store.add(3, booked("b3"), time.Now().Add(outbox.Grace))
		if err := p.Publish(context.Background(), msg); err != nil {
			return err
		}
		if got := em.sent(); len(got) != 3 {
			return fmt.Errorf("sent %v right after Publish, want b3 emitted by Publish itself", got)
		}
		return nil
	})
}

// TestRelayGivesUpOnWhatTheBrokerCanNeverTake: an outbox row whose event
// fails validation (an older version wrote it) is given up on, and the
// rows behind it are sent, instead of retrying it for ever.
func TestRelayGivesUpOnWhatTheBrokerCanNeverTake(t *testing.T) {
	store := newFakeStore()
	bus := memory.New()
	if _, err := bus.Listener("q", []string{contracts.EventBookedName}); err != nil {
		t.Fatal(err)
	}
	em := &servicetest.Emitter{Next: bus.Emitter()} // validates, as every transport does
	invalid := &contracts.EventBooked{ID: "b0", EventID: "e", UserID: "u", Seats: contracts.MaxSeats + 1}
	store.add(1, invalid, time.Now().Add(-time.Second))
	store.add(2, booked("b2"), time.Now().Add(-time.Second))
	p := outbox.NewPublisher(store, em, fast())
	defer p.Close()
	store.awaitEmpty(t)
	if got := em.Emitted(); len(got) != 1 || got[0].(*contracts.EventBooked).ID != "b2" {
		t.Errorf("emitted %v, want only b2", got)
	}
}
