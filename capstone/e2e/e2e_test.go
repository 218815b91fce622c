package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"example.com/myevents/capstone/internal/app"
	"example.com/myevents/capstone/msgqueue/msgqueuetest"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// TestCollaboration: BookingService learns locations and events only from
// the broker, keeps its own copy with the capacity, and goes on selling
// seats while EventService is down.
func TestCollaboration(t *testing.T) {
	forEachBroker(t, func(t *testing.T, cfg app.Config) {
		heard := &recorder{}
		_, bookings := start(t, cfg, app.BookingService, sqlite(t, "bookings"), app.Options{WrapHandler: heard.wrap})
		eventSvc, events := start(t, cfg, app.EventService, sqlite(t, "events"), app.Options{})
		events.JSON("GET", "/healthz", "", http.StatusOK, nil)
		bookings.JSON("GET", "/healthz", "", http.StatusOK, nil)

		locID, evID := createEvent(t, events, "Aida", 5)
		v := awaitEvent(t, bookings, evID)
		if v.Name != "Aida" || v.LocationID != locID || v.Hall != "Main" || v.Capacity != 5 || v.Booked != 0 || v.Available != 5 {
			t.Fatalf("BookingService's copy = %+v, want Aida in %s/Main, capacity 5, nothing booked", v, locID)
		}
		// location.created is bound and handled too, not only event.created.
		heard.awaitCount(t, contracts.LocationCreatedName, 1, locID)

		// Stop EventService: BookingService needs nothing from it.
		if err := eventSvc.Stop(); err != nil {
			t.Fatalf("stopping EventService: %v", err)
		}
		if _, _, err := events.Try("GET", "/healthz", ""); err == nil {
			t.Fatal("EventService still answers after Stop")
		}
		b := book(t, bookings, evID, "alice", 2)
		if b.ID == "" || b.EventID != evID || b.UserID != "alice" || b.Seats != 2 || b.Date <= 0 {
			t.Fatalf("booking = %+v, want an ID, event %s, alice, 2 seats, a date", b, evID)
		}
		v = awaitEvent(t, bookings, evID)
		if v.Booked != 2 || v.Available != 3 {
			t.Fatalf("after booking 2 of 5: %+v", v)
		}
		if !brokertest.CheckIDs(t, "bookings", bookingIDs(t, bookings, evID), []string{b.ID}) {
			t.FailNow()
		}
		bookings.JSON("GET", "/healthz", "", http.StatusOK, nil)
	})
}

// TestLastSeatRace: many clients at once over HTTP for 10 seats; exactly
// 10 are sold, everyone else gets 409, with each store a service can use
// on each broker.
func TestLastSeatRace(t *testing.T) {
	const capacity, clients = 10, 40
	race := func(t *testing.T, cfg app.Config, db string) {
		lastSeatRace(t, cfg, db, 0, 1, capacity, clients)
	}
	t.Run("amqp-sqlite", func(t *testing.T) {
		t.Parallel()
		race(t, amqpConfig(t), sqlite(t, "bookings"))
	})
	t.Run("kafka-sqlite", func(t *testing.T) {
		t.Parallel()
		race(t, kafkaConfig(t), sqlite(t, "bookings"))
	})
	t.Run("kafka-memory", func(t *testing.T) {
		t.Parallel()
		race(t, kafkaConfig(t), "memory:")
	})
}

// TestIdempotentRedelivery: the same events delivered again (as a broker
// does after a lost ack, or a relay after a crash) change nothing.
func TestIdempotentRedelivery(t *testing.T) {
	forEachBroker(t, func(t *testing.T, cfg app.Config) {
		heard := &recorder{}
		_, bookings := start(t, cfg, app.BookingService, sqlite(t, "bookings"), app.Options{WrapHandler: heard.wrap})
		_, events := start(t, cfg, app.EventService, sqlite(t, "events"), app.Options{})
		locID, evID := createEvent(t, events, "Twice", 5)
		awaitEvent(t, bookings, evID)
		b1, b2 := book(t, bookings, evID, "alice", 2), book(t, bookings, evID, "bob", 1)
		heard.awaitCount(t, contracts.EventBookedName, 1, b1.ID, b2.ID)
		heard.awaitCount(t, contracts.LocationCreatedName, 1, locID)
		before := awaitEvent(t, bookings, evID)

		// Emit every event BookingService applied once more, unchanged.
		em := emitter(t, cfg)
		for _, ev := range heard.events() {
			if err := em.Emit(context.Background(), ev); err != nil {
				t.Fatalf("emitting %s again: %v", ev.EventName(), err)
			}
		}
		heard.awaitCount(t, contracts.LocationCreatedName, 2, locID)
		heard.awaitCount(t, contracts.EventCreatedName, 2, evID)
		heard.awaitCount(t, contracts.EventBookedName, 2, b1.ID, b2.ID)

		if after := awaitEvent(t, bookings, evID); after != before || after.Booked != 3 {
			t.Fatalf("after the redelivery: %+v, before: %+v (3 booked)", after, before)
		}
		if !brokertest.CheckIDs(t, "bookings", bookingIDs(t, bookings, evID), []string{b1.ID, b2.ID}) {
			t.FailNow()
		}
		// The capacity is still enforced against the right count.
		bookings.WantError("POST", "/events/"+evID+"/bookings", `{"seats":3,"user_id":"carol"}`, http.StatusConflict, "not enough seats")
		book(t, bookings, evID, "carol", 2)
	})
}

// TestBadInput: requests a service must refuse get the right status and a
// JSON error, and write nothing: no row, no event on the broker.
func TestBadInput(t *testing.T) {
	forEachBroker(t, func(t *testing.T, cfg app.Config) {
		_, bookings := start(t, cfg, app.BookingService, sqlite(t, "bookings"), app.Options{})
		_, events := start(t, cfg, app.EventService, sqlite(t, "events"), app.Options{})
		records := countRecords(t, cfg)
		locID, evID := createEvent(t, events, "Small", 2)
		awaitEvent(t, bookings, evID)
		sold := book(t, bookings, evID, "alice", 2)
		// A booking's 201 comes once it is committed with its event.booked
		// in the outbox; the emit may still be on its way.
		brokertest.Eventually(t, wait, func() error {
			if n := records(); n != 3 {
				return fmt.Errorf("the broker holds %d records after 3 good requests", n)
			}
			return nil
		})

		huge := `{"name":"` + strings.Repeat("x", 70<<10) + `"}`
		// EventService.
		events.WantError("POST", "/locations", `{"name":`, http.StatusBadRequest, "invalid JSON")
		events.WantError("POST", "/locations", `{"name":"X","colour":"red"}`, http.StatusBadRequest, "unknown field")
		events.WantError("POST", "/locations", `{"name":"X","halls":[{"name":"H","capacity":-1}]}`, http.StatusBadRequest, "capacity must be at least 1")
		events.WantError("POST", "/locations", huge, http.StatusRequestEntityTooLarge, "larger than")
		events.WantError("POST", "/events", `{"name":"Y","location_id":"nowhere","hall":"Main","start_date":1795118400,"end_date":1795129200}`, http.StatusUnprocessableEntity, "does not exist")
		events.WantError("POST", "/events", fmt.Sprintf(`{"name":"Y","location_id":%q,"hall":"Attic","start_date":1795118400,"end_date":1795129200}`, locID), http.StatusUnprocessableEntity, "no hall")
		events.WantError("POST", "/events", fmt.Sprintf(`{"name":"Y","location_id":%q,"hall":"Main","start_date":1795129200,"end_date":1795118400}`, locID), http.StatusBadRequest, "before")
		events.WantError("GET", "/locations/nowhere", "", http.StatusNotFound, "not found")
		events.WantError("GET", "/events/nowhere", "", http.StatusNotFound, "not found")
		events.WantError("GET", "/events/name/Nothing", "", http.StatusNotFound, "no event named")
		events.WantError("DELETE", "/events/"+evID, "", http.StatusMethodNotAllowed, "DELETE is not allowed")
		events.WantError("GET", "/bookings", "", http.StatusNotFound, "no route")
		// BookingService.
		bookings.WantError("POST", "/events/nowhere/bookings", `{"seats":1,"user_id":"bob"}`, http.StatusNotFound, "not found")
		bookings.WantError("POST", "/events/"+evID+"/bookings", `{"seats":0,"user_id":"bob"}`, http.StatusBadRequest, "at least 1")
		bookings.WantError("POST", "/events/"+evID+"/bookings", `{"seats":1}`, http.StatusBadRequest, "user_id")
		bookings.WantError("POST", "/events/"+evID+"/bookings", `{"seats":1,"user_id":"bob","vip":true}`, http.StatusBadRequest, "unknown field")
		bookings.WantError("POST", "/events/"+evID+"/bookings", `{"seats":"1","user_id":"bob"}`, http.StatusBadRequest, "invalid JSON")
		bookings.WantError("POST", "/events/"+evID+"/bookings", huge, http.StatusRequestEntityTooLarge, "larger than")
		bookings.WantError("POST", "/events/"+evID+"/bookings", `{"seats":1,"user_id":"bob"}`, http.StatusConflict, "not enough seats")
		bookings.WantError("GET", "/events/nowhere", "", http.StatusNotFound, "not found")
		bookings.WantError("GET", "/events/nowhere/bookings", "", http.StatusNotFound, "not found")

		// Nothing was written anywhere.
		var locs, evs []map[string]any
		events.JSON("GET", "/locations", "", http.StatusOK, &locs)
		events.JSON("GET", "/events", "", http.StatusOK, &evs)
		if len(locs) != 1 || len(evs) != 1 {
			t.Fatalf("EventService stored %d locations and %d events, want 1 and 1", len(locs), len(evs))
		}
		if !brokertest.CheckIDs(t, "bookings", bookingIDs(t, bookings, evID), []string{sold.ID}) {
			t.FailNow()
		}
		if v := awaitEvent(t, bookings, evID); v.Booked != 2 || v.Available != 0 {
			t.Fatalf("after the refused requests: %+v", v)
		}
		if n := records(); n != 3 {
			t.Fatalf("the broker holds %d records, want the 3 of the good requests", n)
		}
	})
}

// TestGracefulShutdown: stopping BookingService closes the HTTP server
// first, lets the event being handled finish (so it is acknowledged or
// committed, not handled again by the next run) and closes the broker
// connections.
func TestGracefulShutdown(t *testing.T) {
	forEachBroker(t, func(t *testing.T, cfg app.Config) {
		db := sqlite(t, "bookings")
		held := holding()
		svc, bookings := start(t, cfg, app.BookingService, db, app.Options{WrapHandler: held.wrap}, held)
		_, events := start(t, cfg, app.EventService, sqlite(t, "events"), app.Options{})
		// Hold the service inside its handler for the first event it
		// receives (on Kafka, location.created and event.created are on
		// two partitions: either may come first).
		_, evID := createEvent(t, events, "Shutdown", 3)
		inFlight := held.awaitEntered(t)

		stopped := make(chan error, 1)
		go func() { stopped <- svc.Stop() }()
		// The HTTP server goes first ...
		brokertest.Eventually(t, wait, func() error {
			if _, _, err := bookings.Try("GET", "/healthz", ""); err == nil {
				return fmt.Errorf("BookingService still answers HTTP")
			}
			return nil
		})
		// ... while the handler in flight keeps the service running.
		select {
		case err := <-stopped:
			t.Fatalf("Stop returned (%v) while a handler was still running", err)
		default:
		}
		held.Release()
		select {
		case err := <-stopped:
			if err != nil {
				t.Fatalf("Stop: %v", err)
			}
		case <-time.After(wait):
			t.Fatal("Stop did not return after the handler finished")
		}
		if cfg.Broker == app.AMQP {
			assertNoConnections(t, cfg)
		}

		// The next run gets the rest, but not the event that was in
		// flight: it was finished and acknowledged.
		again := &recorder{}
		_, bookings = start(t, cfg, app.BookingService, db, app.Options{WrapHandler: again.wrap})
		awaitEvent(t, bookings, evID)
		if n := again.count(inFlight.EventName(), msgqueuetest.EventID(inFlight)); n != 0 {
			t.Errorf("%s was handled again after the restart (%d times): the in-flight handler was not finished", inFlight.EventName(), n)
		}
	})
}

// assertNoConnections fails unless the broker lists no connection of the
// test's BookingService (they are named after its queue). Without
// rabbitmqctl (a broker on another machine) it only logs that it cannot
// check, so the rest of the test still runs.
func assertNoConnections(t *testing.T, cfg app.Config) {
	t.Helper()
	rabbit := brokertest.AMQP(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	brokertest.Eventually(t, wait, func() error {
		out, err := rabbit.Ctl(ctx, "list_connections", "client_properties")
		if errors.Is(err, brokertest.ErrNoCtl) {
			t.Logf("not checking the broker's connections: %v", err)
			return nil
		}
		if err != nil {
			return fmt.Errorf("listing connections: %w", err)
		}
		if strings.Contains(out, cfg.Queue) {
			return fmt.Errorf("a connection of queue %s is still open", cfg.Queue)
		}
		return nil
	})
}

// TestHealthzFollowsTheBroker: /healthz answers 200 while the broker is
// up and 503, naming the broker, once it is gone. The test runs a Kafka of
// its own, so that it can stop it.
func TestHealthzFollowsTheBroker(t *testing.T) {
	t.Parallel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	cfg := app.DefaultConfig(app.EventService)
	cfg.Broker, cfg.KafkaBrokers = app.Kafka, cluster.ListenAddrs()
	_, events := start(t, cfg, app.EventService, "memory:", app.Options{})
	events.JSON("GET", "/healthz", "", http.StatusOK, nil)

	cluster.Close()
	brokertest.Eventually(t, wait, func() error {
		status, resp, err := events.Try("GET", "/healthz", "")
		if err != nil {
			return err
		}
		if status != http.StatusServiceUnavailable || !strings.Contains(string(resp), "broker is down") {
			return fmt.Errorf("healthz = %d %s, want 503 broker is down", status, resp)
		}
		return nil
	})
	// Creating a location now fails cleanly: nothing stored, 503.
	events.WantError("POST", "/locations", `{"name":"Nowhere"}`, http.StatusServiceUnavailable, "nothing was stored")
	var locs []map[string]any
	events.JSON("GET", "/locations", "", http.StatusOK, &locs)
	if len(locs) != 0 {
		t.Fatalf("EventService stored %d locations while Kafka was down", len(locs))
	}
}
