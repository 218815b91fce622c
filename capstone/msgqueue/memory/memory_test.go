package memory_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/memory"
	"example.com/myevents/capstone/msgqueue/msgqueuetest"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// TestConformance runs the transport suite against the in-memory bus.
func TestConformance(t *testing.T) {
	msgqueuetest.Run(t, msgqueuetest.Transport{
		Name: "memory",
		NewEnv: func(t *testing.T) *msgqueuetest.Env {
			bus := memory.New(memory.WithDeliveryLimit(3), memory.WithRetryBackoff(5*time.Millisecond, 20*time.Millisecond))
			const queue = "service"
			return &msgqueuetest.Env{
				NewListener: func(_ context.Context, names ...string) (msgqueue.Listener, error) {
					return bus.Listener(queue, names)
				},
				NewEmitter: func(context.Context) (msgqueue.Emitter, error) {
					return bus.Emitter(), nil
				},
				DeadLetters: func(context.Context) ([]msgqueuetest.DeadLetter, error) {
					var out []msgqueuetest.DeadLetter
					for _, dl := range bus.DeadLetters(queue) {
						out = append(out, msgqueuetest.DeadLetter{ID: dl.ID, Name: dl.Name, Body: dl.Body})
					}
					return out, nil
				},
				DeliveryLimit: 3,
				Poison:        msgqueuetest.AllPoison,
				InjectPoison: func(_ context.Context, kind msgqueuetest.PoisonKind, id string) error {
					name, body := msgqueuetest.PoisonMessage(kind)
					return bus.Inject(queue, memory.Message{ID: id, Name: name, Body: body})
				},
			}
		},
	})
}

// TestMemoryRules checks the rules the suite does not: unroutable events,
// invalid events, the delivery limit and the Emitted record.
func TestMemoryRules(t *testing.T) {
	bus := memory.New(memory.WithDeliveryLimit(3), memory.WithRetryBackoff(time.Millisecond, time.Millisecond))
	em := bus.Emitter()
	ev := &contracts.EventBooked{ID: "b-1", EventID: "e-1", Seats: 1}

	// Nobody is bound yet: the event is unroutable, as with AMQP's
	// mandatory flag.
	if err := em.Emit(t.Context(), ev); !errors.Is(err, msgqueue.ErrUnroutable) {
		t.Errorf("Emit without a bound queue returned %v, want msgqueue.ErrUnroutable", err)
	}
	if err := em.Emit(t.Context(), &contracts.EventBooked{ID: "b-2"}); !errors.Is(err, contracts.ErrInvalid) {
		t.Errorf("Emit of an invalid event returned %v, want contracts.ErrInvalid", err)
	}

	// A handler that always fails: three deliveries, then a dead letter.
	l, err := bus.Listener("svc", []string{contracts.EventBookedName})
	if err != nil {
		t.Fatal(err)
	}
	if err := em.Emit(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	calls := 0
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- l.Listen(ctx, func(context.Context, contracts.Event) error {
			calls++
			return errors.New("always fails")
		})
	}()
	brokertest.Eventually(t, 10*time.Second, func() error {
		if len(bus.DeadLetters("svc")) == 0 {
			return errors.New("no dead letter yet")
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Listen: %v", err)
	}
	if calls != 3 {
		t.Errorf("handler called %d times, want 3 (the delivery limit)", calls)
	}
	if dead := bus.DeadLetters("svc"); len(dead) != 1 || dead[0].Name != contracts.EventBookedName || !strings.Contains(dead[0].Reason, "delivery limit 3 reached: always fails") {
		t.Errorf("dead letters = %+v, want the event, for the delivery limit", dead)
	}
	if got := bus.Emitted(); len(got) != 1 || got[0].Name != contracts.EventBookedName {
		t.Errorf("Emitted() = %+v, want the one routed event", got)
	}
}

// TestOversizedMessageIsDeadLettered: a message over
// msgqueue.MaxMessageSize put on the bus by hand (as another client would
// send it to a broker) is dead-lettered without reaching the handler, as
// the brokers' listeners do; the event behind it arrives.
func TestOversizedMessageIsDeadLettered(t *testing.T) {
	bus := memory.New()
	l, err := bus.Listener("svc", []string{contracts.LocationCreatedName})
	if err != nil {
		t.Fatal(err)
	}
	big, err := json.Marshal(msgqueuetest.BulkyLocation())
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Inject("svc", memory.Message{ID: "big", Name: contracts.LocationCreatedName, Body: big}); err != nil {
		t.Fatal(err)
	}
	if err := bus.Emitter().Emit(t.Context(), &contracts.LocationCreated{ID: "small", Name: "Small"}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- l.Listen(ctx, func(_ context.Context, ev contracts.Event) error {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, ev.(*contracts.LocationCreated).ID)
			return nil
		})
	}()
	brokertest.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 {
			return errors.New("the small location has not arrived")
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Listen: %v", err)
	}
	if len(seen) != 1 || seen[0] != "small" {
		t.Errorf("the handler saw %v, want only the small location", seen)
	}
	if dead := bus.DeadLetters("svc"); len(dead) != 1 || dead[0].ID != "big" || !strings.Contains(dead[0].Reason, "too large") {
		t.Errorf("dead letters = %+v, want the big one, too large", dead)
	}
}

// TestEmitCountsTheNameTowardTheLimit: the bus counts a message's name
// with its body, as the brokers count the header or the envelope that
// carries it. An event whose body alone is exactly
// msgqueue.MaxMessageSize, which both brokers' emitters refuse, is
// refused here too.
func TestEmitCountsTheNameTowardTheLimit(t *testing.T) {
	loc, err := msgqueuetest.LocationBodyAtTheLimit("loc-edge")
	if err != nil {
		t.Fatal(err)
	}
	bus := memory.New()
	if _, err := bus.Listener("svc", []string{contracts.LocationCreatedName}); err != nil {
		t.Fatal(err)
	}
	if err := bus.Emitter().Emit(t.Context(), loc); !errors.Is(err, msgqueue.ErrTooLarge) {
		t.Errorf("Emit of a location whose body alone is %d bytes = %v, want ErrTooLarge", msgqueue.MaxMessageSize, err)
	}
}
