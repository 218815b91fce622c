package bookingservice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/rabbitmq"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

func TestMain(m *testing.M) { brokertest.Main(m) }

// errAckLost is what the exercise test's handler returns after
// BookingService applied the first delivery of the booking: as if the
// process had died before its ack reached the broker.
var errAckLost = errors.New("the ack of this delivery was lost (the test's doing): deliver it again")

// TestExerciseApplyOnce checks the capstone's exercise, applyOnce, in
// BookingService on the real broker: an exchange and a queue of its own,
// the service's listener and emitter, the memory store, the HTTP API.
// EventService's event.created announces a concert of 10 seats; then
// event.booked brings a booking of 2 seats, three times:
//
//   - the first delivery is applied, but its ack is lost (the handler
//     reports an error after BookingService applied it), so the listener
//     returns it to the queue and the broker delivers it again;
//   - an emitter publishes the same event.booked again (the same message
//     ID: a resend after a lost confirm);
//
// and a booking of 3 seats made over HTTP comes back as BookingService's
// own event.booked. Then other instances' bookings come from the broker:
// ada's second booking (another ID), one of 4 seats past the capacity
// (11 of 10: sold already, no capacity check), and one of a second
// concert before that concert's event.created (kept on a placeholder).
// After each, the service must show the seats counted once, and the
// broker must have every message acknowledged: nothing left in the queue,
// nothing in the dead-letter queue. Last, the count's limit, on the store:
// a count may reach math.MaxInt but not pass it, on b's own event only,
// placeholders included.
func TestExerciseApplyOnce(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const concert, bookingID = "concert-1", "booking-1"
	at := time.Date(2026, 11, 27, 20, 0, 0, 0, time.UTC)
	booked := &contracts.EventBooked{ID: bookingID, EventID: concert, UserID: "ada", Seats: 2, Date: at.Add(-24 * time.Hour)}

	// The template answers with errTODO: say what is missing, and stop.
	// An applyOnce that locks s.mu again never returns: say so, and stop,
	// instead of waiting for go test's timeout.
	probe := NewMemoryStore()
	probed := make(chan error, 1)
	go func() {
		for range 2 {
			if _, err := probe.ApplyBooking(ctx, bookingOf(booked)); errors.Is(err, errTODO) {
				probed <- err
				return
			}
		}
		probed <- nil
	}()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	select {
	case err := <-probed:
		if err != nil {
			t.Fatal(err)
		}
	case <-deadline.C:
		t.Fatal("applyOnce did not return: ApplyBooking already holds s.mu; don't lock it again")
	}

	// The service's own namespace on the shared broker.
	rabbit := brokertest.AMQP(t)
	name := brokertest.Name(t, "capstone")
	exchange, queue := name+".events", name+".bookingservice"
	dlq := rabbitmq.DeadLetterQueue(queue)
	t.Cleanup(func() {
		if err := rabbitmq.DeleteTopology(adminChannel(t, rabbit.URL), exchange, queue); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	opts := []rabbitmq.Option{
		rabbitmq.WithExchange(exchange),
		rabbitmq.WithLogger(quiet()),
		rabbitmq.WithRetryBackoff(20*time.Millisecond, 200*time.Millisecond),
		rabbitmq.WithDeliveryLimit(3),
	}
	em, err := rabbitmq.NewEmitter(ctx, rabbit.URL, append(opts, rabbitmq.WithConnectionName(name+"/emitter"))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { em.Close() })
	l, err := rabbitmq.NewListener(ctx, rabbit.URL, queue, Names(), append(opts, rabbitmq.WithConnectionName(name+"/listener"))...)
	if err != nil {
		t.Fatal(err)
	}
	store := NewMemoryStore()
	svc, err := New(store, em, Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	srv := servicetest.Serve(t, svc)

	// handle is the service's Handle, plus a count of the deliveries of
	// booking-1 and, on its first delivery, a lost ack.
	var (
		mu         sync.Mutex
		deliveries int
		failures   []string // what BookingService's Handle returned, when not nil
	)
	handle := func(ctx context.Context, ev contracts.Event) error {
		err := svc.Handle(ctx, ev)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failures = append(failures, fmt.Sprintf("%s: %v", ev.EventName(), err))
		}
		if b, ok := ev.(*contracts.EventBooked); ok && b.ID == bookingID {
			deliveries++
			if deliveries == 1 && err == nil {
				return errAckLost
			}
		}
		return err
	}
	listening := make(chan error, 1)
	go func() { listening <- l.Listen(context.Background(), handle) }()
	stop := sync.OnceValue(func() error {
		l.Close()
		return <-listening
	})
	t.Cleanup(func() { _ = stop() })

	// evidence is what the test saw, for a failure message.
	evidence := func() string {
		mu.Lock()
		defer mu.Unlock()
		st := l.Stats()
		s := fmt.Sprintf("the broker delivered %s %d times; the listener acked %d messages, returned %d to the queue, dead-lettered %d",
			bookingID, deliveries, st.Acked, st.Retried, st.DeadLettered)
		if len(failures) > 0 {
			s += fmt.Sprintf("; BookingService's Handle failed %d times, with: %s", len(failures), strings.Join(slices.Compact(slices.Clone(failures)), "; "))
		}
		return s
	}
	// settle waits until the listener has settled n messages (acked or
	// dead-lettered), then fails the test if one was dead-lettered, with
	// hint: what applyOnce should have done instead.
	settle := func(n int64, what, hint string) {
		t.Helper()
		brokertest.Eventually(t, 10*time.Second, func() error {
			if st := l.Stats(); st.Acked+st.DeadLettered < n {
				return fmt.Errorf("%s: not every message was settled: %s", what, evidence())
			}
			return nil
		})
		if st := l.Stats(); st.DeadLettered > 0 {
			msg := fmt.Sprintf("%s: the dead-letter queue holds %s; %s.", what, deadLetters(t, rabbit.URL, dlq), evidence())
			if hint != "" {
				msg += " " + hint
			}
			t.Fatal(msg)
		}
	}
	const (
		storedAlready = "A booking stored already is no error: report it as not applied (false, nil), and the listener acknowledges it"
		countedOnce   = "each booking counted once: a booking whose ID is stored already (s.bookings.has(b.ID)) changes nothing"
	)
	// wantBooked checks the seats the service's HTTP API shows for show.
	wantBooked := func(show string, want int, what, hint string) {
		t.Helper()
		var view struct{ Booked int }
		srv.JSON("GET", "/events/"+show, "", 200, &view)
		if view.Booked != want {
			t.Fatalf("booked %d seats of %s after %s; want %d, %s (%s)", view.Booked, show, what, want, hint, evidence())
		}
	}

	// EventService announces the concert.
	created := &contracts.EventCreated{ID: concert, Name: "Aida", LocationID: "loc-1", Hall: "Main",
		Capacity: 10, StartDate: at, EndDate: at.Add(3 * time.Hour)}
	if err := em.Emit(ctx, created); err != nil {
		t.Fatal(err)
	}
	settle(1, "event.created", "")

	// The booking, whose first ack is lost: the broker delivers it again.
	if err := em.Emit(ctx, booked); err != nil {
		t.Fatal(err)
	}
	settle(2, "event.booked and its redelivery", storedAlready)
	mu.Lock()
	redelivered := deliveries >= 2
	mu.Unlock()
	if !redelivered {
		t.Fatalf("the broker did not redeliver %s after the lost ack: %s", bookingID, evidence())
	}
	wantBooked(concert, 2, "a redelivery of a 2-seat booking", countedOnce)
	var list []struct{ ID string }
	srv.JSON("GET", "/events/"+concert+"/bookings", "", 200, &list)
	if len(list) != 1 || list[0].ID != bookingID {
		t.Fatalf("GET /events/%s/bookings lists %v after a redelivery of %s; want it once", concert, list, bookingID)
	}

	// The same event.booked once more: the same message ID, a new message.
	if err := em.Emit(ctx, booked); err != nil {
		t.Fatal(err)
	}
	settle(3, "the same event.booked published again", storedAlready)
	wantBooked(concert, 2, "the same 2-seat event.booked was published again", countedOnce)
	if applied, err := store.ApplyBooking(ctx, bookingOf(booked)); applied || err != nil {
		t.Fatalf("ApplyBooking of %s, stored already, = %v, %v; want false, nil: applyOnce reports a booking stored already as not applied, and no error", bookingID, applied, err)
	}

	// A booking over HTTP: BookingService hears its own event.booked back.
	srv.JSON("POST", "/events/"+concert+"/bookings", `{"seats":3,"user_id":"grace"}`, 201, nil)
	settle(4, "BookingService's own event.booked", storedAlready)
	wantBooked(concert, 5, "BookingService heard its own 3-seat booking back (2 booked before)", countedOnce)

	// Another instance sold ada a second booking: another ID, the same
	// user. It is a new booking, and counts.
	again := &contracts.EventBooked{ID: "booking-2", EventID: concert, UserID: "ada", Seats: 2, Date: at.Add(-23 * time.Hour)}
	if err := em.Emit(ctx, again); err != nil {
		t.Fatal(err)
	}
	settle(5, "ada's second booking, booking-2", "A booking with an ID not stored yet is new: store it and count it")
	wantBooked(concert, 7, "ada's second booking, booking-2, of 2 seats (5 booked before)",
		"booking-2 counted: a booking is applied already only if its ID is stored (s.bookings.has(b.ID)), whoever booked it; one user may book many times")

	// Another instance sold 4 more seats: 11 of 10. The count says what
	// was sold; an event.booked from the broker is sold already (by
	// another instance, before a resize, or replayed), and no capacity
	// check may refuse it: Book alone checks capacity, before it sells.
	over := &contracts.EventBooked{ID: "booking-3", EventID: concert, UserID: "bob", Seats: 4, Date: at.Add(-22 * time.Hour)}
	if err := em.Emit(ctx, over); err != nil {
		t.Fatal(err)
	}
	const noCapacityCheck = "an event.booked from the broker was sold already (by another instance, or replayed from the log): count its seats with no capacity check, even past the capacity"
	settle(6, "a 4-seat booking from the broker past the capacity (7 of 10 booked)", noCapacityCheck)
	wantBooked(concert, 11, "a 4-seat booking from the broker (7 of 10 booked before)", noCapacityCheck)

	// A booking can come before its event.created (another queue, another
	// partition, a slower publisher): it is kept on a placeholder, and
	// the event.created that follows takes its count over.
	const early = "concert-2"
	first := &contracts.EventBooked{ID: "booking-4", EventID: early, UserID: "ada", Seats: 3, Date: at.Add(-21 * time.Hour)}
	if err := em.Emit(ctx, first); err != nil {
		t.Fatal(err)
	}
	const placeholder = "a booking can come before its event.created: when s.events has no b.ShowID yet, s.add(b) stores it and counts its seats on a placeholder, and report true, no error"
	settle(7, "a booking of "+early+" before its event.created", placeholder)
	later := *created
	later.ID, later.Name = early, "Tosca"
	if err := em.Emit(ctx, &later); err != nil {
		t.Fatal(err)
	}
	settle(8, "the event.created of "+early+", after its booking", "")
	wantBooked(early, 3, "a 3-seat booking that came before its event.created", placeholder)
	srv.JSON("GET", "/events/"+early+"/bookings", "", 200, &list)
	if len(list) != 1 || list[0].ID != first.ID {
		t.Fatalf("GET /events/%s/bookings lists %v; want %s: %s", early, list, first.ID, placeholder)
	}

	// Stop the listener (a message it still held goes back to the queue),
	// then ask the broker what is left.
	if err := stop(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ch := adminChannel(t, rabbit.URL)
	for _, q := range []string{queue, dlq} {
		info, err := rabbitmq.InspectQueue(ch, q)
		if err != nil {
			t.Fatalf("asking the broker about queue %s: %v", q, err)
		}
		if info.Messages != 0 {
			t.Errorf("queue %s holds %d messages after the test; want 0, every delivery acknowledged (%s)", q, info.Messages, evidence())
		}
	}
	if st := l.Stats(); st.Retried != 1 {
		t.Errorf("the listener returned %d messages to the queue; want 1, the delivery whose ack was lost (%s)", st.Retried, evidence())
	}

	// The count's limit: no test can book that many seats, so set the
	// count by hand.
	setBooked := func(show string, n int) {
		t.Helper()
		store.mu.Lock()
		defer store.mu.Unlock()
		ev, ok := store.events[show]
		if !ok {
			t.Fatalf("show %s is not in the store: %s", show, placeholder)
		}
		ev.Booked = n
	}
	setBooked(concert, math.MaxInt-1)
	huge := Booking{ID: "booking-huge", ShowID: concert, UserID: "u", Seats: 2, Date: at}
	if applied, err := store.ApplyBooking(ctx, huge); !errors.Is(err, contracts.ErrInvalid) {
		t.Errorf("ApplyBooking(2 seats) on an event with math.MaxInt-1 booked = %v, %v; want an error wrapping contracts.ErrInvalid: the count would overflow (Booked + Seats wraps around to a negative number: compare Booked with math.MaxInt - Seats)", applied, err)
	}
	if ev, err := store.Show(ctx, concert); err != nil || ev.Booked != math.MaxInt-1 {
		t.Errorf("event %s has %d seats booked after that booking (err %v); want math.MaxInt-1, unchanged: a refused booking changes nothing", concert, ev.Booked, err)
	}

	// Up to math.MaxInt itself, a count is fine.
	setBooked(concert, math.MaxInt-2)
	edge := Booking{ID: "booking-edge", ShowID: concert, UserID: "u", Seats: 2, Date: at}
	if applied, err := store.ApplyBooking(ctx, edge); !applied || err != nil {
		t.Errorf("ApplyBooking(2 seats) on an event with math.MaxInt-2 booked = %v, %v; want true, nil: the count reaches math.MaxInt and does not pass it (refuse only when Booked > math.MaxInt - Seats)", applied, err)
	}
	if ev, err := store.Show(ctx, concert); err != nil || ev.Booked != math.MaxInt {
		t.Errorf("event %s has %d seats booked after that booking (err %v); want math.MaxInt", concert, ev.Booked, err)
	}

	// Only b's own event's count matters: another event's full count
	// refuses nothing here.
	setBooked(concert, 11)
	setBooked(early, math.MaxInt)
	other := Booking{ID: "booking-other", ShowID: concert, UserID: "u", Seats: 2, Date: at}
	if applied, err := store.ApplyBooking(ctx, other); !applied || err != nil {
		t.Errorf("ApplyBooking(2 seats) on %s (11 booked), while %s has math.MaxInt booked = %v, %v; want true, nil: check the count of b's own event, s.events[b.ShowID], not of every event", concert, early, applied, err)
	}
	setBooked(early, 3)

	// A placeholder's count has the same limit: its event.created takes
	// the count over.
	const unknown = "concert-3"
	if applied, err := store.ApplyBooking(ctx, Booking{ID: "booking-5", ShowID: unknown, UserID: "u", Seats: 1, Date: at}); !applied || err != nil {
		t.Fatalf("ApplyBooking of a booking of %s, not announced yet = %v, %v; want true, nil: %s", unknown, applied, err, placeholder)
	}
	setBooked(unknown, math.MaxInt-1)
	huge.ID, huge.ShowID = "booking-huge-2", unknown
	if applied, err := store.ApplyBooking(ctx, huge); !errors.Is(err, contracts.ErrInvalid) {
		t.Errorf("ApplyBooking(2 seats) on the placeholder of %s, not announced yet, with math.MaxInt-1 booked = %v, %v; want an error wrapping contracts.ErrInvalid: a placeholder's count may not pass math.MaxInt either (check the count whenever s.events has b's event, known or not)", unknown, applied, err)
	}
}

// bookingOf is the booking an event.booked announces.
func bookingOf(e *contracts.EventBooked) Booking {
	return Booking{ID: e.ID, ShowID: e.EventID, UserID: e.UserID, Seats: e.Seats, Date: e.Date}
}

// adminChannel opens a channel of the test's own, closed at the end.
func adminChannel(t *testing.T, url string) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("connecting the test's own client: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("opening the test's channel: %v", err)
	}
	return ch
}

// deadLetters describes what the dead-letter queue holds, without taking
// it: the messages are read unacknowledged and go back when the channel
// closes.
func deadLetters(t *testing.T, url, dlq string) string {
	t.Helper()
	ch := adminChannel(t, url)
	defer ch.Close()
	var out []string
	for {
		d, ok, err := ch.Get(dlq, false /* autoAck */)
		if err != nil {
			return fmt.Sprintf("(reading %s: %v)", dlq, err)
		}
		if !ok {
			break
		}
		var body struct{ ID string }
		_ = json.Unmarshal(d.Body, &body)
		out = append(out, fmt.Sprintf("%v %s, message ID %s (reason %v: %v)", d.Headers[rabbitmq.HeaderEventName], body.ID, d.MessageId,
			d.Headers[msgqueue.HeaderReason], d.Headers[msgqueue.HeaderError]))
	}
	if len(out) == 0 {
		return "nothing"
	}
	return strings.Join(out, ", ")
}
