package bookingservice

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"example.com/myevents/capstone/internal/httpjson"
	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/memory"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// queue is the name of BookingService's queue on the test bus.
const queue = "bookingservice"

// fixture is one BookingService over a real store, served over HTTP and
// listening on an in-memory bus, as the cmd wiring will do with a broker.
type fixture struct {
	bus   *memory.Bus
	store Store
	em    *servicetest.Emitter
	svc   *Service
	srv   *servicetest.Server
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newBus() *memory.Bus {
	return memory.New(memory.WithRetryBackoff(5*time.Millisecond, 5*time.Millisecond), memory.WithLogger(quiet()))
}

// newFixture starts a BookingService on dsn, listening on bus (a new bus if
// nil).
func newFixture(t *testing.T, dsn string, bus *memory.Bus, opt Options) *fixture {
	t.Helper()
	if bus == nil {
		bus = newBus()
	}
	store, err := OpenStore(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	em := &servicetest.Emitter{Next: bus.Emitter()}
	if opt.Logger == nil {
		opt.Logger = quiet()
	}
	if opt.Outbox.Poll == 0 {
		opt.Outbox = servicetest.FastOutbox()
	}
	svc, err := New(store, em, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })

	// Bind the queue for every event the service handles, then listen.
	l, err := bus.Listener(queue, Names())
	if err != nil {
		t.Fatal(err)
	}
	servicetest.Listen(t, l, svc.Handle)
	return &fixture{bus: bus, store: store, em: em, svc: svc, srv: servicetest.Serve(t, svc)}
}

// forEachStore runs test against a fresh service on every store backend.
func forEachStore(t *testing.T, test func(t *testing.T, f *fixture)) {
	for _, b := range servicetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			test(t, newFixture(t, b.DSN, nil, Options{}))
		})
	}
}

// announce emits event.created (and its location) on the bus, as
// EventService would, and waits until the service knows the event.
func (f *fixture) announce(t *testing.T, id string, capacity int) {
	t.Helper()
	ctx := context.Background()
	from := f.bus.Emitter()
	at := time.Date(2026, 11, 27, 20, 0, 0, 0, time.UTC)
	for _, ev := range []contracts.Event{
		&contracts.LocationCreated{ID: "loc-" + id, Name: "Arena", Halls: []contracts.Hall{{Name: "Main", Capacity: capacity}}},
		&contracts.EventCreated{ID: id, Name: "Concert " + id, LocationID: "loc-" + id, Hall: "Main", Capacity: capacity, StartDate: at, EndDate: at.Add(2 * time.Hour)},
	} {
		if err := from.Emit(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	brokertest.Eventually(t, 5*time.Second, func() error {
		_, err := f.store.Show(ctx, id)
		return err
	})
}

// drain emits a sentinel and waits until the service applied it: the
// service's queue has one listener and is first in, first out, so every
// event emitted before has been handled.
func (f *fixture) drain(t *testing.T) {
	t.Helper()
	id := "sentinel-" + rand.Text()
	if err := f.bus.Emitter().Emit(context.Background(), &contracts.LocationCreated{ID: id, Name: "Hall"}); err != nil {
		t.Fatal(err)
	}
	brokertest.Eventually(t, 5*time.Second, func() error {
		_, err := f.store.Location(context.Background(), id)
		return err
	})
}

// waitSent waits until the outbox is empty and n events were emitted.
func (f *fixture) waitSent(t *testing.T, n int) {
	t.Helper()
	servicetest.WaitSent(t, f.store.Outbox(), f.em, n)
}

func (f *fixture) view(t *testing.T, id string) map[string]any {
	t.Helper()
	var v map[string]any
	f.srv.JSON("GET", "/events/"+id, "", 200, &v)
	return v
}

func (f *fixture) booked(t *testing.T, id string) int {
	t.Helper()
	ev, err := f.store.Show(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return ev.Booked
}

// TestIdempotentHandling redelivers and replays events: nothing is counted
// twice, bookings sold elsewhere are counted once, and a booking heard
// before its event is counted when the event arrives.
func TestIdempotentHandling(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		from := f.bus.Emitter()
		emit := func(evs ...contracts.Event) {
			t.Helper()
			for _, ev := range evs {
				if err := from.Emit(ctx, ev); err != nil {
					t.Fatal(err)
				}
			}
		}
		f.announce(t, "ev", 10)
		f.srv.JSON("POST", "/events/ev/bookings", `{"seats":4,"user_id":"own"}`, 201, nil)
		f.waitSent(t, 1)
		own := f.em.Emitted()[0]

		// Redeliveries: the same location, event and our own booking again,
		// and an event.created that claims another capacity.
		foreign := &contracts.EventBooked{ID: "other-instance-1", EventID: "ev", UserID: "bob", Seats: 2, Date: time.Now().UTC().Truncate(time.Microsecond)}
		emit(&contracts.EventCreated{ID: "ev", Name: "Changed", LocationID: "loc-ev", Hall: "Main", Capacity: 99},
			&contracts.LocationCreated{ID: "loc-ev", Name: "Changed"},
			own, own, foreign, foreign)
		// Values instead of pointers are handled too.
		if err := f.svc.Handle(ctx, *foreign); err != nil {
			t.Fatal(err)
		}
		f.drain(t)

		v := f.view(t, "ev")
		if v["capacity"] != 10.0 || v["name"] != "Concert ev" || v["booked"] != 6.0 || v["available"] != 4.0 {
			t.Errorf("after redeliveries: %v; want capacity 10, booked 4 + 2", v)
		}
		var list []map[string]any
		f.srv.JSON("GET", "/events/ev/bookings", "", 200, &list)
		if len(list) != 2 {
			t.Errorf("%d bookings, want 2: %v", len(list), list)
		}

		// A booking heard before its event: unknown until event.created,
		// then counted.
		emit(&contracts.EventBooked{ID: "early", EventID: "late", UserID: "carol", Seats: 3})
		f.drain(t)
		f.srv.WantError("GET", "/events/late", "", 404, `event "late" not found`)
		f.srv.WantError("POST", "/events/late/bookings", `{"seats":1,"user_id":"x"}`, 404, "not found")
		f.announce(t, "late", 5)
		if got := f.booked(t, "late"); got != 3 {
			t.Errorf("late event booked %d, want the early 3", got)
		}
		f.srv.WantError("POST", "/events/late/bookings", `{"seats":3,"user_id":"x"}`, 409, "not enough seats")
		f.srv.JSON("POST", "/events/late/bookings", `{"seats":2,"user_id":"x"}`, 201, nil)

		// Nothing was dead-lettered but the events no retry can fix.
		if dead := f.bus.DeadLetters(queue); len(dead) != 0 {
			t.Errorf("dead letters: %+v", dead)
		}
	})
}

// otherEvent is an event BookingService does not handle.
type otherEvent struct{}

func (otherEvent) EventName() string    { return "user.created" }
func (otherEvent) PartitionKey() string { return "u" }
func (otherEvent) Validate() error      { return nil }

func TestHandleRefusesWhatNoRetryCanFix(t *testing.T) {
	svc, err := New(NewMemoryStore(), &servicetest.Emitter{}, Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	for _, ev := range []contracts.Event{
		&contracts.EventBooked{ID: "b", EventID: "e", Seats: 0},
		&contracts.EventCreated{ID: "e", LocationID: "l", Hall: "h", Capacity: -1},
		&contracts.LocationCreated{},
		otherEvent{},
		nil,
	} {
		if err := svc.Handle(context.Background(), ev); !msgqueue.IsPermanent(err) {
			t.Errorf("Handle(%#v) = %v, want a permanent error", ev, err)
		}
	}
}

// TestReplayRebuildsState replays everything a service emitted and heard
// (as the Kafka log holds it) into a fresh memory store, twice: the copy
// ends up with the same events and bookings, counted once.
func TestReplayRebuildsState(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		f.announce(t, "ev", 20)
		for i := range 5 {
			f.srv.JSON("POST", "/events/ev/bookings", fmt.Sprintf(`{"seats":%d,"user_id":"u%d"}`, i+1, i), 201, nil)
		}
		f.srv.WantError("POST", "/events/ev/bookings", `{"seats":6,"user_id":"too-many"}`, 409, "not enough seats")
		f.waitSent(t, 5)

		replica := NewMemoryStore()
		svc, err := New(replica, &servicetest.Emitter{}, Options{Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		defer svc.Close()
		log := f.bus.Emitted() // every message on the bus, in order
		for range 2 {
			for _, m := range log {
				ev, err := contracts.Decode(m.Name, m.Body)
				if err != nil {
					t.Fatal(err)
				}
				if err := svc.Handle(context.Background(), ev); err != nil {
					t.Fatalf("replaying %s: %v", m.Name, err)
				}
			}
		}
		ctx := context.Background()
		want, _ := f.store.Show(ctx, "ev")
		got, err := replica.Show(ctx, "ev")
		if err != nil || !reflect.DeepEqual(got, want) || got.Booked != 15 {
			t.Errorf("replayed event %+v, %v; want %+v with 15 booked", got, err, want)
		}
		wantB, _ := f.store.Bookings(ctx, "ev")
		gotB, _ := replica.Bookings(ctx, "ev")
		if !reflect.DeepEqual(gotB, wantB) {
			t.Errorf("replayed bookings %+v, want %+v", gotB, wantB)
		}
	})
}

// snapshot is everything a booking request could have written.
type snapshot struct {
	booked, bookings, emitted, unsent int
}

// bookedOnce announces event "ev" with capacity seats, books seats of them
// for user "first", waits until event.booked is sent, and returns the
// snapshot after that.
func (f *fixture) bookedOnce(t *testing.T, capacity, seats int) snapshot {
	t.Helper()
	f.announce(t, "ev", capacity)
	f.srv.JSON("POST", "/events/ev/bookings", fmt.Sprintf(`{"seats":%d,"user_id":"first"}`, seats), 201, nil)
	f.waitSent(t, 1)
	return f.snapshot(t, "ev")
}

func (f *fixture) snapshot(t *testing.T, id string) snapshot {
	t.Helper()
	bs, err := f.store.Bookings(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return snapshot{f.booked(t, id), len(bs), len(f.em.Emitted()), servicetest.Unsent(t, f.store.Outbox())}
}

func TestBadInputWritesNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		before := f.bookedOnce(t, 5, 4)

		tests := []struct {
			name, method, path, body string
			status                   int
			part                     string
		}{
			{"malformed", "POST", "/events/ev/bookings", `{"seats":`, 400, "invalid JSON body"},
			{"empty body", "POST", "/events/ev/bookings", ``, 400, "the body is empty"},
			{"unknown field", "POST", "/events/ev/bookings", `{"seats":1,"user_id":"u","price":9}`, 400, `unknown field "price"`},
			{"seats as text", "POST", "/events/ev/bookings", `{"seats":"one","user_id":"u"}`, 400, "invalid JSON body"},
			{"fractional seats", "POST", "/events/ev/bookings", `{"seats":1.5,"user_id":"u"}`, 400, "invalid JSON body"},
			{"trailing data", "POST", "/events/ev/bookings", `{"seats":1,"user_id":"u"}{}`, 400, "more data"},
			{"zero seats", "POST", "/events/ev/bookings", `{"seats":0,"user_id":"u"}`, 400, "seats must be at least 1 and at most 1000, got 0"},
			{"negative seats", "POST", "/events/ev/bookings", `{"seats":-2,"user_id":"u"}`, 400, "seats must be at least 1 and at most 1000, got -2"},
			{"no user", "POST", "/events/ev/bookings", `{"seats":1}`, 400, "user_id is required"},
			{"too large", "POST", "/events/ev/bookings", `{"user_id":"` + strings.Repeat("u", httpjson.MaxBody) + `"}`, 413, "larger than"},
			{"sold out", "POST", "/events/ev/bookings", `{"seats":2,"user_id":"u"}`, 409, `not enough seats left for event "ev"`},
			{"unknown event", "POST", "/events/nope/bookings", `{"seats":1,"user_id":"u"}`, 404, `event "nope" not found`},
			{"unknown event view", "GET", "/events/nope", "", 404, `event "nope" not found`},
			{"unknown event bookings", "GET", "/events/nope/bookings", "", 404, `event "nope" not found`},
			{"unknown path", "GET", "/locations", "", 404, "no route for GET /locations"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				f.srv.WantError(tc.method, tc.path, tc.body, tc.status, tc.part)
				if after := f.snapshot(t, "ev"); after != before {
					t.Errorf("the request wrote something: before %+v, after %+v", before, after)
				}
			})
		}
	})
}

// TestEmitFailure: with a SQL store the booking stands and the relay
// delivers event.booked once the broker is back; with the memory store the
// seats are given back and the client gets 503.
func TestEmitFailure(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		f.announce(t, "ev", 5)
		f.em.Fail(true)
		if f.store.Outbox() == nil {
			f.srv.WantError("POST", "/events/ev/bookings", `{"seats":5,"user_id":"u"}`, 503, "nothing was booked")
			if s := f.snapshot(t, "ev"); s != (snapshot{}) {
				t.Fatalf("a refused booking left %+v", s)
			}
			f.em.Fail(false)
			f.srv.JSON("POST", "/events/ev/bookings", `{"seats":5,"user_id":"u"}`, 201, nil)
			f.waitSent(t, 1)
			return
		}

		var b bookingJSON
		f.srv.JSON("POST", "/events/ev/bookings", `{"seats":5,"user_id":"u"}`, 201, &b)
		if s := f.snapshot(t, "ev"); s != (snapshot{booked: 5, bookings: 1, emitted: 0, unsent: 1}) {
			t.Fatalf("while the broker refuses: %+v", s)
		}
		f.em.AwaitRefused(t, 5)
		f.em.Fail(false)
		f.waitSent(t, 1)
		if got := f.em.Emitted()[0].(*contracts.EventBooked); got.ID != b.ID || got.Seats != 5 {
			t.Errorf("relay emitted %+v, want booking %s", got, b.ID)
		}
		f.drain(t)
		if got := f.booked(t, "ev"); got != 5 {
			t.Errorf("booked %d after hearing the relayed event, want 5", got)
		}
	})
}

// TestHealthz: /healthz asks each store (the skeleton's own test covers
// the broker).
func TestHealthz(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		f.srv.JSON("GET", "/healthz", "", 200, nil)
	})
	t.Run("store down", func(t *testing.T) {
		f := newFixture(t, servicetest.PostgresDSN(t), nil, Options{})
		f.store.Close()
		f.srv.WantError("GET", "/healthz", "", 503, "store is down")
	})
}
