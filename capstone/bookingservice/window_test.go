package bookingservice

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/capstone/msgqueue/rabbitmq"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// checkBooked fails unless show id counts booked seats.
func checkBooked(t *testing.T, s Store, id string, booked int) {
	t.Helper()
	if ev, err := s.Show(context.Background(), id); err != nil || ev.Booked != booked {
		t.Errorf("show %s: %+v, %v; want %d booked", id, ev, err, booked)
	}
}

// batchCounting counts the store calls of the bookings heard on the
// broker.
type batchCounting struct {
	*SQLStore
	batches, singles atomic.Int64
}

func (c *batchCounting) ApplyBookings(ctx context.Context, bs []Booking) ([]bool, error) {
	c.batches.Add(1)
	return c.SQLStore.ApplyBookings(ctx, bs)
}

func (c *batchCounting) ApplyBooking(ctx context.Context, b Booking) (bool, error) {
	c.singles.Add(1)
	return c.SQLStore.ApplyBooking(ctx, b)
}

// TestHandleBatchOnTheBroker: BookingService, listening with ListenBatch,
// applies a backlog of event.booked (one of them published twice, as an
// emitter that lost a confirm would) in one store transaction: every seat
// counted once, every message acknowledged, nothing dead-lettered.
func TestHandleBatchOnTheBroker(t *testing.T) {
	sqlBackends(t, func(t *testing.T, s *SQLStore) {
		store := &batchCounting{SQLStore: s}
		rabbit := brokertest.AMQP(t)
		name := brokertest.Name(t, "window")
		exchange, queue := name+".events", name+".bookingservice"
		t.Cleanup(func() {
			if err := rabbitmq.DeleteTopology(adminChannel(t, rabbit.URL), exchange, queue); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})
		opts := []rabbitmq.Option{rabbitmq.WithExchange(exchange), rabbitmq.WithLogger(quiet())}
		l, err := rabbitmq.NewListener(context.Background(), rabbit.URL, queue, Names(), append(opts, rabbitmq.WithPrefetch(32), rabbitmq.WithBatchWait(time.Second))...)
		if err != nil {
			t.Fatal(err)
		}
		em, err := rabbitmq.NewEmitter(context.Background(), rabbit.URL, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { em.Close() })
		if err := store.SaveShow(context.Background(), Show{ID: "show", Name: "S", LocationID: "loc", Hall: "Main", Capacity: 100}); err != nil {
			t.Fatal(err)
		}
		at := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
		for i := range 20 {
			ev := &contracts.EventBooked{ID: fmt.Sprintf("elsewhere-%02d", min(i, 18)), EventID: "show", UserID: "u", Seats: 1, Date: at}
			if err := em.Emit(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
		}
		svc, err := New(store, &servicetest.Emitter{}, Options{Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.Close() })
		listening := make(chan error, 1)
		go func() { listening <- l.ListenBatch(context.Background(), svc.Handle, svc.HandleBatch) }()
		t.Cleanup(func() {
			l.Close()
			if err := <-listening; err != nil {
				t.Errorf("ListenBatch: %v", err)
			}
		})
		brokertest.Eventually(t, 30*time.Second, func() error {
			if st := l.Stats(); st.Acked != 20 {
				return fmt.Errorf("listener %+v, want 20 acknowledged", st)
			}
			return nil
		})
		checkBooked(t, store, "show", 19)
		if st := l.Stats(); st.Batches != 1 || st.DeadLettered != 0 || st.Retried != 0 {
			t.Errorf("listener %+v, want the 20 deliveries in one window", st)
		}
		if b, one := store.batches.Load(), store.singles.Load(); b != 1 || one != 0 {
			t.Errorf("%d ApplyBookings and %d ApplyBooking calls, want one transaction for all", b, one)
		}
		if got := svc.Applied(); got != 19 {
			t.Errorf("Applied = %d, want 19", got)
		}
		if dl := deadLetters(t, rabbit.URL, rabbitmq.DeadLetterQueue(queue)); dl != "nothing" {
			t.Errorf("dead letters: %s", dl)
		}
	})
}

// TestHandleBatchRefusesAMixedWindowWholly: a window that holds another
// event than event.booked is refused before anything of it is used up:
// this instance's own booking in it, handed to Handle afterwards, is still
// known as its own and costs no store call.
func TestHandleBatchRefusesAMixedWindowWholly(t *testing.T) {
	sqlBackends(t, func(t *testing.T, s *SQLStore) {
		store := &batchCounting{SQLStore: s}
		svc, err := New(store, &servicetest.Emitter{}, Options{Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.Close() })
		if svc.own == nil {
			t.Fatal("the service keeps no set of its own bookings; this test needs one")
		}
		svc.own.add("mine")
		at := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
		mine := &contracts.EventBooked{ID: "mine", EventID: "show", UserID: "u", Seats: 1, Date: at}
		created := &contracts.EventCreated{ID: "show", Name: "S", LocationID: "loc", Hall: "Main", Capacity: 10, StartDate: at, EndDate: at}
		if err := svc.HandleBatch(context.Background(), []contracts.Event{mine, created}); err == nil {
			t.Fatal("HandleBatch applied a window holding an event.created")
		}
		if err := svc.Handle(context.Background(), mine); err != nil {
			t.Fatal(err)
		}
		if b, one := store.batches.Load(), store.singles.Load(); b != 0 || one != 0 {
			t.Errorf("%d ApplyBookings and %d ApplyBooking calls, want none: the booking is this instance's own", b, one)
		}
	})
}
