package eventservice

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"example.com/myevents/capstone/internal/httpjson"
	"example.com/myevents/capstone/internal/outbox"
	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/capstone/msgqueue/memory"
	"example.com/myevents/contracts"
)

// fixture is one EventService over a real store, served over HTTP.
type fixture struct {
	store Store
	em    *servicetest.Emitter
	svc   *Service
	srv   *servicetest.Server
}

func newFixture(t *testing.T, dsn string, opt Options) *fixture {
	t.Helper()
	store, err := OpenStore(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	em := &servicetest.Emitter{}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Outbox.Poll == 0 {
		opt.Outbox = servicetest.FastOutbox()
	}
	svc, err := New(store, em, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() }) // runs before store.Close
	return &fixture{store: store, em: em, svc: svc, srv: servicetest.Serve(t, svc)}
}

// forEachStore runs test against a fresh service on every store backend.
func forEachStore(t *testing.T, test func(t *testing.T, f *fixture)) {
	for _, b := range servicetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			test(t, newFixture(t, b.DSN, Options{}))
		})
	}
}

// waitSent waits until the outbox is empty and n events were emitted.
func (f *fixture) waitSent(t *testing.T, n int) {
	t.Helper()
	servicetest.WaitSent(t, f.store.Outbox(), f.em, n)
}

const aLocation = `{"name":"Olympiastadion","address":"Olympischer Platz 3","country":"DE","open_time":8,"close_time":23,
	"halls":[{"name":"Main","capacity":74475},{"name":"Foyer","capacity":300}]}`

func TestCreateAndRead(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		// Create a location: 201 with its ID and exactly the contract's fields.
		var raw map[string]any
		f.srv.JSON("POST", "/locations", aLocation, 201, &raw)
		wantKeys := []string{"address", "close_time", "country", "halls", "id", "name", "open_time"}
		if keys := slices.Sorted(maps.Keys(raw)); !slices.Equal(keys, wantKeys) {
			t.Errorf("location fields %v, want %v", keys, wantKeys)
		}
		var loc Location
		f.srv.JSON("POST", "/locations", aLocation, 201, &loc)
		if loc.ID == "" || loc.ID == raw["id"] || loc.Name != "Olympiastadion" || len(loc.Halls) != 2 || loc.Halls[1] != (Hall{"Foyer", 300}) {
			t.Fatalf("created location %+v", loc)
		}

		// Read it back, alone and in the list.
		var got Location
		f.srv.JSON("GET", "/locations/"+loc.ID, "", 200, &got)
		if !reflect.DeepEqual(got, loc) {
			t.Errorf("GET /locations/%s = %+v, want %+v", loc.ID, got, loc)
		}
		var all []Location
		f.srv.JSON("GET", "/locations", "", 200, &all)
		if len(all) != 2 || !reflect.DeepEqual(all[1], loc) {
			t.Errorf("GET /locations = %+v", all)
		}

		// Create an event in the Foyer: it gets the hall's capacity.
		body := fmt.Sprintf(`{"name":"Opera Aida","location_id":%q,"hall":"Foyer","start_date":1795118400,"end_date":1795129200,"duration":180}`, loc.ID)
		var ev map[string]any
		f.srv.JSON("POST", "/events", body, 201, &ev)
		want := map[string]any{"id": ev["id"], "name": "Opera Aida", "location_id": loc.ID, "hall": "Foyer",
			"capacity": 300.0, "start_date": 1795118400.0, "end_date": 1795129200.0, "duration": 180.0}
		if ev["id"] == "" || !reflect.DeepEqual(ev, want) {
			t.Errorf("POST /events = %v, want %v", ev, want)
		}
		id := ev["id"].(string)
		for _, path := range []string{"/events/" + id, "/events/name/" + url.PathEscape("Opera Aida")} {
			var got map[string]any
			f.srv.JSON("GET", path, "", 200, &got)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("GET %s = %v, want %v", path, got, want)
			}
		}
		var evs []map[string]any
		f.srv.JSON("GET", "/events", "", 200, &evs)
		if len(evs) != 1 || !reflect.DeepEqual(evs[0], want) {
			t.Errorf("GET /events = %v", evs)
		}

		// The broker got location.created twice and event.created with the
		// hall's capacity and the dates; the outbox is empty.
		f.waitSent(t, 3)
		emitted := f.em.Emitted()
		if lc, ok := emitted[1].(*contracts.LocationCreated); !ok || !reflect.DeepEqual(lc, locationCreated(loc)) {
			t.Errorf("second emitted %#v, want location.created of %s", emitted[1], loc.ID)
		}
		start := time.Unix(1795118400, 0).UTC()
		wantEC := &contracts.EventCreated{ID: id, Name: "Opera Aida", LocationID: loc.ID, Hall: "Foyer", Capacity: 300,
			StartDate: start, EndDate: start.Add(3 * time.Hour)}
		if !reflect.DeepEqual(emitted[2], contracts.Event(wantEC)) {
			t.Errorf("third emitted %#v, want %#v", emitted[2], wantEC)
		}
	})
}

// snapshot is everything a request could have written.
type snapshot struct {
	locations, events, emitted, unsent int
}

// sentLocation creates aLocation, waits until its location.created is
// sent, and returns the location and the snapshot after that.
func (f *fixture) sentLocation(t *testing.T) (Location, snapshot) {
	t.Helper()
	var loc Location
	f.srv.JSON("POST", "/locations", aLocation, 201, &loc)
	f.waitSent(t, 1)
	return loc, f.snapshot(t)
}

// event is the body of a POST /events for Aida in hall Main of location
// locID, with more fields appended (`,"duration":5`).
func event(locID, fields string) string {
	return fmt.Sprintf(`{"name":"Aida","location_id":%q,"hall":"Main","start_date":100,"end_date":200%s}`, locID, fields)
}

func (f *fixture) snapshot(t *testing.T) snapshot {
	t.Helper()
	ls, err := f.store.Locations(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	evs, err := f.store.Events(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return snapshot{len(ls), len(evs), len(f.em.Emitted()), servicetest.Unsent(t, f.store.Outbox())}
}

func TestBadInputWritesNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		loc, before := f.sentLocation(t)

		huge := `{"name":"` + strings.Repeat("x", httpjson.MaxBody) + `"}`
		tests := []struct {
			name, method, path, body string
			status                   int
			part                     string
		}{
			{"location malformed", "POST", "/locations", `{"name":`, 400, "invalid JSON body"},
			{"location empty body", "POST", "/locations", ``, 400, "the body is empty"},
			{"location unknown field", "POST", "/locations", `{"name":"x","seats":4}`, 400, `unknown field "seats"`},
			{"location trailing data", "POST", "/locations", `{"name":"x"} {}`, 400, "more data"},
			{"location wrong type", "POST", "/locations", `{"name":"x","open_time":"eight"}`, 400, "invalid JSON body"},
			{"location no name", "POST", "/locations", `{"address":"x"}`, 400, "name is required"},
			{"location negative capacity", "POST", "/locations", `{"name":"x","halls":[{"name":"A","capacity":-1}]}`, 400, "capacity must be at least 1 and at most 1000000, got -1"},
			{"location hall without name", "POST", "/locations", `{"name":"x","halls":[{"capacity":5}]}`, 400, "halls[0]: name is required"},
			{"location duplicate hall", "POST", "/locations", `{"name":"x","halls":[{"name":"A","capacity":1},{"name":"A","capacity":2}]}`, 400, "two halls"},
			{"location negative hours", "POST", "/locations", `{"name":"x","open_time":-1}`, 400, "must not be negative"},
			{"location too large", "POST", "/locations", huge, 413, "larger than"},
			{"event malformed", "POST", "/events", `{`, 400, "invalid JSON body"},
			{"event unknown field", "POST", "/events", event(loc.ID, `,"price":5`), 400, `unknown field "price"`},
			{"event date as text", "POST", "/events", `{"name":"x","start_date":"2026-11-27"}`, 400, "invalid JSON body"},
			{"event no name", "POST", "/events", strings.Replace(event(loc.ID, ""), `"Aida"`, `""`, 1), 400, "name is required"},
			{"event no hall", "POST", "/events", strings.Replace(event(loc.ID, ""), `"Main"`, `""`, 1), 400, "location_id and hall are required"},
			{"event no start", "POST", "/events", fmt.Sprintf(`{"name":"x","location_id":%q,"hall":"Main"}`, loc.ID), 400, "start_date is required"},
			{"event start before 1970", "POST", "/events", fmt.Sprintf(`{"name":"x","location_id":%q,"hall":"Main","start_date":-1,"end_date":100}`, loc.ID), 400, "start_date must be after 1970-01-01 (Unix seconds above 0), got -1"},
			{"event ends before it starts", "POST", "/events", fmt.Sprintf(`{"name":"x","location_id":%q,"hall":"Main","start_date":200,"end_date":100}`, loc.ID), 400, "before start_date"},
			{"event negative duration", "POST", "/events", event(loc.ID, `,"duration":-5`), 400, "duration -5 is negative"},
			{"event too large", "POST", "/events", huge, 413, "larger than"},
			{"event unknown location", "POST", "/events", `{"name":"x","location_id":"nowhere","hall":"Main","start_date":1,"end_date":2}`, 422, `location "nowhere" does not exist`},
			{"event unknown hall", "POST", "/events", strings.Replace(event(loc.ID, ""), `"Main"`, `"Attic"`, 1), 422, `has no hall "Attic"`},
			{"unknown location id", "GET", "/locations/nope", "", 404, `location "nope" not found`},
			{"unknown event id", "GET", "/events/nope", "", 404, `event "nope" not found`},
			{"unknown event name", "GET", "/events/name/nope", "", 404, `no event named "nope"`},
			{"unknown path", "GET", "/bookings", "", 404, "no route for GET /bookings"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				f.srv.WantError(tc.method, tc.path, tc.body, tc.status, tc.part)
				if after := f.snapshot(t); after != before {
					t.Errorf("the request wrote something: before %+v, after %+v", before, after)
				}
			})
		}
	})
}

// TestEmitFailure: a SQL store keeps the write and the relay delivers the
// event once the broker is back; the memory store undoes the write and
// answers 503.
func TestEmitFailure(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		f.em.Fail(true)
		if f.store.Outbox() == nil {
			f.srv.WantError("POST", "/locations", aLocation, 503, "nothing was stored")
			if s := f.snapshot(t); s != (snapshot{}) {
				t.Fatalf("a refused location left %+v", s)
			}
			f.em.Fail(false)
			f.srv.JSON("POST", "/locations", aLocation, 201, nil)
			f.waitSent(t, 1)
			return
		}

		var loc Location
		f.srv.JSON("POST", "/locations", aLocation, 201, &loc)
		f.srv.JSON("POST", "/events", fmt.Sprintf(`{"name":"Aida","location_id":%q,"hall":"Main","start_date":1,"end_date":2}`, loc.ID), 201, nil)
		if n := servicetest.Unsent(t, f.store.Outbox()); n != 2 {
			t.Fatalf("%d unsent while the broker refuses, want 2", n)
		}
		// The relay keeps trying while the broker is down.
		f.em.AwaitRefused(t, 5)
		f.em.Fail(false)
		f.waitSent(t, 2)
		names := []string{f.em.Emitted()[0].EventName(), f.em.Emitted()[1].EventName()}
		if !slices.Equal(names, []string{contracts.LocationCreatedName, contracts.EventCreatedName}) {
			t.Errorf("emitted %v", names)
		}
	})
}

// TestRelayAfterCrash: rows committed by a process that died before
// emitting are sent by the next start's relay.
func TestRelayAfterCrash(t *testing.T) {
	for _, b := range servicetest.Backends(t) {
		if b.Name == "memory" {
			continue
		}
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			store, err := OpenStore(ctx, b.DSN)
			if err != nil {
				t.Fatal(err)
			}
			// The "crashed" process: committed, never emitted.
			if _, err := store.AddLocation(ctx, Location{ID: "crashed", Name: "Left behind", Halls: []Hall{}}); err != nil {
				t.Fatal(err)
			}
			store.Close()

			// The next start; its clock is past the grace period.
			opt := Options{Outbox: servicetest.FastOutbox()}
			opt.Outbox.Now = func() time.Time { return time.Now().Add(outbox.Grace) }
			f := newFixture(t, b.DSN, opt)
			f.waitSent(t, 1)
			if id := f.em.Emitted()[0].PartitionKey(); id != "crashed" {
				t.Errorf("emitted location %s, want crashed", id)
			}
		})
	}
}

// TestHealthz: /healthz asks each store (the skeleton's own test covers
// the broker).
func TestHealthz(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		f.srv.JSON("GET", "/healthz", "", 200, nil)
	})
	t.Run("store down", func(t *testing.T) {
		f := newFixture(t, servicetest.SQLiteDSN(t), Options{})
		f.store.Close()
		f.srv.WantError("GET", "/healthz", "", 503, "store is down")
	})
}

// TestUnroutableSaysWhoIsMissing: with a memory store and no service bound
// for the event yet, the broker is up but routes the event nowhere. The
// answer says so, and nothing is stored.
func TestUnroutableSaysWhoIsMissing(t *testing.T) {
	store, err := OpenStore(context.Background(), "memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	bus := memory.New()
	svc, err := New(store, bus.Emitter(), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	srv := servicetest.Serve(t, svc)

	srv.WantError("POST", "/locations", aLocation, 503, "no service listens for location.created yet")
	locs, err := store.Locations(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(locs) != 0 {
		t.Fatalf("an unroutable location was stored: %+v", locs)
	}
}
