package e2e_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"example.com/myevents/capstone/internal/app"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// TestRestartSQLite: BookingService with a SQLite file answers the same
// after a restart, and receives what was emitted while it was down,
// without handling again what it had handled.
func TestRestartSQLite(t *testing.T) {
	forEachBroker(t, func(t *testing.T, cfg app.Config) {
		db := sqlite(t, "bookings")
		first := &recorder{}
		svc, bookings := start(t, cfg, app.BookingService, db, app.Options{WrapHandler: first.wrap})
		_, events := start(t, cfg, app.EventService, sqlite(t, "events"), app.Options{})
		_, evID := createEvent(t, events, "Before", 4)
		awaitEvent(t, bookings, evID)
		b := book(t, bookings, evID, "alice", 3)
		first.awaitCount(t, contracts.EventBookedName, 1, b.ID)
		before := awaitEvent(t, bookings, evID)

		if err := svc.Stop(); err != nil {
			t.Fatalf("stopping BookingService: %v", err)
		}
		// Emitted while BookingService is down: the queue or the log
		// keeps it.
		_, evWhileDown := createEvent(t, events, "While down", 7)

		again := &recorder{}
		_, bookings = start(t, cfg, app.BookingService, db, app.Options{WrapHandler: again.wrap})
		if after := awaitEvent(t, bookings, evID); after != before {
			t.Fatalf("after the restart: %+v, before: %+v", after, before)
		}
		if !brokertest.CheckIDs(t, "bookings after the restart", bookingIDs(t, bookings, evID), []string{b.ID}) {
			t.FailNow()
		}
		if v := awaitEvent(t, bookings, evWhileDown); v.Capacity != 7 {
			t.Fatalf("event created while BookingService was down: %+v", v)
		}
		// It resumed: what the first run had acknowledged or committed
		// was not handed over again.
		if n := again.count(contracts.EventCreatedName, evID) + again.count(contracts.EventBookedName, b.ID); n != 0 {
			t.Errorf("the restarted service handled %d events the first run had finished", n)
		}
		bookings.WantError("POST", "/events/"+evID+"/bookings", `{"seats":2,"user_id":"bob"}`, http.StatusConflict, "not enough seats")
		book(t, bookings, evID, "bob", 1)
	})
}

// TestRestartMemoryKafka: BookingService with the memory store on Kafka
// rebuilds everything from the log at start-up, bookings included, and
// answers nothing but 503 until it has caught up.
func TestRestartMemoryKafka(t *testing.T) {
	t.Parallel()
	cfg := kafkaConfig(t)
	svc, bookings := start(t, cfg, app.BookingService, "memory:", app.Options{})
	_, events := start(t, cfg, app.EventService, "memory:", app.Options{})
	_, evA := createEvent(t, events, "A", 5)
	_, evB := createEvent(t, events, "B", 3)
	awaitEvent(t, bookings, evA)
	awaitEvent(t, bookings, evB)
	a1, a2, b1 := book(t, bookings, evA, "alice", 2), book(t, bookings, evA, "bob", 2), book(t, bookings, evB, "carol", 3)
	bookings.WantError("POST", "/events/"+evB+"/bookings", `{"seats":1,"user_id":"dave"}`, http.StatusConflict, "not enough seats")
	beforeA, beforeB := awaitEvent(t, bookings, evA), awaitEvent(t, bookings, evB)
	if err := svc.Stop(); err != nil {
		t.Fatalf("stopping BookingService: %v", err)
	}
	records := countRecords(t, cfg)
	inLog := records()

	// Start again, empty, and hold the replay at its first event.
	held := holding()
	_, bookings = start(t, cfg, app.BookingService, "memory:", app.Options{WrapHandler: held.wrap}, held)
	held.awaitEntered(t)
	// Not caught up: every answer is 503, from many clients at once, and
	// nothing is sold.
	var wg sync.WaitGroup
	var mu sync.Mutex
	answers := map[string]int{}
	for i := range 20 {
		wg.Go(func() {
			method, path, body := "POST", "/events/"+evA+"/bookings", `{"seats":1,"user_id":"early"}`
			switch i % 4 {
			case 1:
				method, path, body = "GET", "/events/"+evA, ""
			case 2:
				method, path, body = "GET", "/healthz", ""
			case 3:
				method, path, body = "GET", "/events/"+evB+"/bookings", ""
			}
			status, resp, err := bookings.Try(method, path, body)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				answers[err.Error()]++
			case status != http.StatusServiceUnavailable || !strings.Contains(string(resp), "replaying"):
				answers[fmt.Sprintf("%s %s -> %d %s", method, path, status, resp)]++
			default:
				answers["503"]++
			}
		})
	}
	wg.Wait()
	if answers["503"] != 20 {
		t.Fatalf("before catching up, want 20 x 503 replaying; got %v", answers)
	}
	if n := records(); n != inLog {
		t.Fatalf("the log grew from %d to %d records before BookingService caught up", inLog, n)
	}

	// Let the replay go on: it catches up with the log and serves.
	held.Release()
	awaitHealth(t, bookings, http.StatusOK)
	if afterA, afterB := awaitEvent(t, bookings, evA), awaitEvent(t, bookings, evB); afterA != beforeA || afterB != beforeB {
		t.Fatalf("rebuilt from the log: %+v and %+v; before the restart: %+v and %+v", afterA, afterB, beforeA, beforeB)
	}
	if !brokertest.CheckIDs(t, "bookings of A rebuilt", bookingIDs(t, bookings, evA), []string{a1.ID, a2.ID}) {
		t.FailNow()
	}
	if !brokertest.CheckIDs(t, "bookings of B rebuilt", bookingIDs(t, bookings, evB), []string{b1.ID}) {
		t.FailNow()
	}
	bookings.WantError("POST", "/events/"+evA+"/bookings", `{"seats":2,"user_id":"erin"}`, http.StatusConflict, "not enough seats")
	bookings.WantError("POST", "/events/"+evB+"/bookings", `{"seats":1,"user_id":"erin"}`, http.StatusConflict, "not enough seats")
	book(t, bookings, evA, "erin", 1)
}
