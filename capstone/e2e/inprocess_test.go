package e2e_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"example.com/myevents/capstone/bookingservice"
	"example.com/myevents/capstone/eventservice"
	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/capstone/msgqueue/memory"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// TestWithEventService runs both services in the test process on one
// in-memory bus, BookingService on every store: EventService creates a
// location and an event, BookingService hears them and sells seats, and
// hears its own event.booked back without counting it twice.
func TestWithEventService(t *testing.T) {
	for _, backend := range servicetest.Backends(t) {
		t.Run(backend.Name, func(t *testing.T) {
			t.Parallel()
			quiet := slog.New(slog.DiscardHandler)
			bus := memory.New(memory.WithRetryBackoff(5*time.Millisecond, 5*time.Millisecond), memory.WithLogger(quiet))
			store, emitted, bookings := startBookings(t, bus, backend.DSN)
			es, err := eventservice.New(eventservice.NewMemoryStore(), bus.Emitter(), eventservice.Options{Logger: quiet})
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
				status, body := bookings.Do("GET", "/events/"+id, "")
				if status != 200 {
					return fmt.Errorf("GET /events/%s = %d %s", id, status, body)
				}
				return nil
			})
			if _, err := store.Location(context.Background(), loc.ID); err != nil {
				t.Errorf("location.created was not stored: %v", err)
			}

			// Book 3 seats: 201 with exactly the contract's fields.
			var b map[string]any
			bookings.JSON("POST", "/events/"+id+"/bookings", `{"seats":3,"user_id":"alice"}`, 201, &b)
			if keys := slices.Sorted(maps.Keys(b)); !slices.Equal(keys, []string{"date", "event_id", "id", "seats", "user_id"}) {
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
			servicetest.WaitSent(t, store.Outbox(), emitted, 1)
			eb := emitted.Emitted()[0].(*contracts.EventBooked)
			if eb.ID != b["id"] || eb.EventID != id || eb.UserID != "alice" || eb.Seats != 3 || eb.Date.Unix() != int64(b["date"].(float64)) {
				t.Errorf("emitted %+v for booking %v", eb, b)
			}
			drain(t, bus, store)
			want := map[string]any{"id": id, "name": "Aida", "location_id": loc.ID, "hall": "Main", "capacity": 10.0,
				"booked": 3.0, "available": 7.0, "start_date": 1795118400.0, "end_date": 1795129200.0}
			var got map[string]any
			bookings.JSON("GET", "/events/"+id, "", 200, &got)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("GET /events/%s = %v, want %v", id, got, want)
			}
			var list []map[string]any
			bookings.JSON("GET", "/events/"+id+"/bookings", "", 200, &list)
			if len(list) != 1 || !reflect.DeepEqual(list[0], b) {
				t.Errorf("GET bookings = %v, want [%v]", list, b)
			}
			if dead := bus.DeadLetters(bookingsQueue); len(dead) != 0 {
				t.Errorf("dead letters: %+v", dead)
			}
		})
	}
}

// bookingsQueue is BookingService's queue on an in-memory bus.
const bookingsQueue = "bookingservice"

// startBookings starts BookingService on dsn, listening on bus and served
// over HTTP, as the commands wire it to a broker. It returns the store, the
// emitter that records what the service emitted, and the server.
func startBookings(t *testing.T, bus *memory.Bus, dsn string) (bookingservice.Store, *servicetest.Emitter, *servicetest.Server) {
	t.Helper()
	store, err := bookingservice.OpenStore(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	em := &servicetest.Emitter{Next: bus.Emitter()}
	svc, err := bookingservice.New(store, em, bookingservice.Options{
		Logger: slog.New(slog.DiscardHandler),
		Outbox: servicetest.FastOutbox(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	// Bind the queue for every event the service handles, then listen.
	l, err := bus.Listener(bookingsQueue, bookingservice.Names())
	if err != nil {
		t.Fatal(err)
	}
	servicetest.Listen(t, l, svc.Handle)
	return store, em, servicetest.Serve(t, svc)
}

// drain emits a sentinel and waits until BookingService applied it: its
// queue has one listener and is first in, first out, so every event
// emitted before has been handled.
func drain(t *testing.T, bus *memory.Bus, store bookingservice.Store) {
	t.Helper()
	id := "sentinel-" + rand.Text()
	if err := bus.Emitter().Emit(context.Background(), &contracts.LocationCreated{ID: id, Name: "Hall"}); err != nil {
		t.Fatal(err)
	}
	brokertest.Eventually(t, 5*time.Second, func() error {
		_, err := store.Location(context.Background(), id)
		return err
	})
}
