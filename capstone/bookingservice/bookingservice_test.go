package bookingservice

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"example.com/myevents/capstone/eventservice"
	"example.com/myevents/capstone/internal/httpjson"
	"example.com/myevents/capstone/internal/outbox"
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

// fastOutbox makes the relay retry within milliseconds.
func fastOutbox() outbox.Options {
	return outbox.Options{Poll: 10 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
}

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
		opt.Outbox = fastOutbox()
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
	listening := make(chan error, 1)
	go func() { listening <- l.Listen(context.Background(), svc.Handle) }()
	t.Cleanup(func() {
		l.Close()
		if err := <-listening; err != nil {
			t.Errorf("Listen: %v", err)
		}
	})
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
		_, err := f.store.Event(ctx, id)
		return err
	})
}

// drain emits a sentinel and waits until the service applied it: the
// service's queue has one listener and is first in, first out, so every
// event emitted before has been handled.
func (f *fixture) drain(t *testing.T) {
	t.Helper()
	id := "sentinel-" + rand.Text()
	if err := f.bus.Emitter().Emit(context.Background(), &contracts.LocationCreated{ID: id}); err != nil {
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
	brokertest.Eventually(t, 5*time.Second, func() error {
		if u := unsent(t, f.store); u != 0 {
			return fmt.Errorf("%d outbox messages unsent", u)
		}
		if got := len(f.em.Emitted()); got != n {
			return fmt.Errorf("%d events emitted, want %d", got, n)
		}
		return nil
	})
}

func (f *fixture) view(t *testing.T, id string) map[string]any {
	t.Helper()
	var v map[string]any
	f.srv.JSON("GET", "/events/"+id, "", 200, &v)
	return v
}

func (f *fixture) booked(t *testing.T, id string) int {
	t.Helper()
	ev, err := f.store.Event(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return ev.Booked
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestWithEventService runs both services on one bus: EventService creates
// a location and an event, BookingService hears them and sells seats, and
// hears its own event.booked back without counting it twice.
func TestWithEventService(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		es, err := eventservice.New(eventservice.NewMemoryStore(), f.bus.Emitter(), eventservice.Options{Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		defer es.Close()
		events := servicetest.Serve(t, es)

		var loc eventservice.Location
		events.JSON("POST", "/locations", `{"name":"Arena","halls":[{"name":"Main","capacity":10}]}`, 201, &loc)
		var created map[string]any
		events.JSON("POST", "/events", fmt.Sprintf(`{"name":"Aida","location_id":%q,"hall":"Main","start_date":1795118400,"end_date":1795129200,"duration":180}`, loc.ID), 201, &created)
		id := created["id"].(string)

		// Eventually consistent: BookingService knows the event once it
		// heard event.created.
		brokertest.Eventually(t, 5*time.Second, func() error {
			status, body := f.srv.Do("GET", "/events/"+id, "")
			if status != 200 {
				return fmt.Errorf("GET /events/%s = %d %s", id, status, body)
			}
			return nil
		})
		if _, err := f.store.Location(context.Background(), loc.ID); err != nil {
			t.Errorf("location.created was not stored: %v", err)
		}

		// Book 3 seats: 201 with exactly the contract's fields.
		var b map[string]any
		f.srv.JSON("POST", "/events/"+id+"/bookings", `{"seats":3,"user_id":"alice"}`, 201, &b)
		if keys := sortedKeys(b); !slices.Equal(keys, []string{"date", "event_id", "id", "seats", "user_id"}) {
			t.Errorf("booking fields %v", keys)
		}
		if b["event_id"] != id || b["user_id"] != "alice" || b["seats"] != 3.0 || b["id"] == "" {
			t.Errorf("booking %v", b)
		}
		if d := time.Unix(int64(b["date"].(float64)), 0); time.Since(d) > time.Minute || time.Since(d) < -time.Minute {
			t.Errorf("booking date %v is not now", d)
		}

		// The broker got event.booked with the same facts; the service
		// heard it back and did not count it twice.
		f.waitSent(t, 1)
		eb := f.em.Emitted()[0].(*contracts.EventBooked)
		if eb.ID != b["id"] || eb.EventID != id || eb.UserID != "alice" || eb.Seats != 3 || eb.Date.Unix() != int64(b["date"].(float64)) {
			t.Errorf("emitted %+v for booking %v", eb, b)
		}
		f.drain(t)
		want := map[string]any{"id": id, "name": "Aida", "location_id": loc.ID, "hall": "Main", "capacity": 10.0,
			"booked": 3.0, "available": 7.0, "start_date": 1795118400.0, "end_date": 1795129200.0}
		if got := f.view(t, id); !reflect.DeepEqual(got, want) {
			t.Errorf("GET /events/%s = %v, want %v", id, got, want)
		}
		var list []map[string]any
		f.srv.JSON("GET", "/events/"+id+"/bookings", "", 200, &list)
		if len(list) != 1 || !reflect.DeepEqual(list[0], b) {
			t.Errorf("GET bookings = %v, want [%v]", list, b)
		}
		if dead := f.bus.DeadLetters(queue); len(dead) != 0 {
			t.Errorf("dead letters: %+v", dead)
		}
	})
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
		want, _ := f.store.Event(ctx, "ev")
		got, err := replica.Event(ctx, "ev")
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

func (f *fixture) snapshot(t *testing.T, id string) snapshot {
	t.Helper()
	bs, err := f.store.Bookings(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return snapshot{f.booked(t, id), len(bs), len(f.em.Emitted()), unsent(t, f.store)}
}

func TestBadInputWritesNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		f.announce(t, "ev", 5)
		f.srv.JSON("POST", "/events/ev/bookings", `{"seats":4,"user_id":"first"}`, 201, nil)
		f.waitSent(t, 1)
		before := f.snapshot(t, "ev")

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
		brokertest.Eventually(t, 5*time.Second, func() error {
			if n := f.em.Refused(); n < 5 {
				return fmt.Errorf("%d attempts so far", n)
			}
			return nil
		})
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
		_, err := b.store.Event(context.Background(), "ev")
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
		if ua, ub := unsent(t, a.store), unsent(t, b.store); ua+ub != 0 {
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

func TestHealthz(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		f.srv.JSON("GET", "/healthz", "", 200, nil)
	})
	t.Run("broker down", func(t *testing.T) {
		f := newFixture(t, "memory:", nil, Options{BrokerHealth: func(context.Context) error { return errors.New("channel closed") }})
		f.srv.WantError("GET", "/healthz", "", 503, "broker is down: channel closed")
	})
	t.Run("store down", func(t *testing.T) {
		f := newFixture(t, servicetest.PostgresDSN(t), nil, Options{})
		f.store.Close()
		f.srv.WantError("GET", "/healthz", "", 503, "store is down")
	})
}

func TestNewNeedsStoreAndEmitter(t *testing.T) {
	if _, err := New(nil, &servicetest.Emitter{}, Options{}); err == nil {
		t.Error("New without a store succeeded")
	}
	if _, err := New(NewMemoryStore(), nil, Options{}); err == nil {
		t.Error("New without an emitter succeeded")
	}
}
