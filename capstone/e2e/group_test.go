package e2e_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"example.com/myevents/capstone/internal/app"
	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// TestLastSeatRaceGroups: the last-seat race over RabbitMQ, through the
// group commit (the default) and the one-at-a-time path (BookingGroup 1),
// on SQLite, on PostgreSQL, and with two BookingService instances sharing
// one PostgreSQL database and one queue. Exactly the capacity is sold, the
// bookings stored are exactly those answered 201, and every event.booked
// heard back (by the instance that sold it or the other one) changes no
// count.
func TestLastSeatRaceGroups(t *testing.T) {
	const capacity, clients = 30, 120
	for _, tc := range []struct {
		name      string
		store     string
		group     int
		instances int
	}{
		{"sqlite-group", "sqlite", 0, 1},
		{"sqlite-one-at-a-time", "sqlite", 1, 1},
		{"postgres-group", "postgres", 0, 1},
		{"postgres-two-instances-group", "postgres", 0, 2},
		{"postgres-two-instances-one-at-a-time", "postgres", 1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := sqlite(t, "bookings")
			if tc.store == "postgres" {
				db = servicetest.PostgresDSN(t)
			}
			lastSeatRace(t, amqpConfig(t), db, tc.group, tc.instances, capacity, clients)
		})
	}
}

// lastSeatRace starts instances BookingServices (sharing cfg's queue and
// the store db; group is their app.Options.BookingGroup) and an
// EventService, sends clients bookings of one seat at once for an event
// of capacity seats, spread over the instances, and requires exactly the
// capacity sold, the bookings stored to be those answered 201, and every
// event.booked heard back (by any instance, once: one queue) to change no
// count.
func lastSeatRace(t *testing.T, cfg app.Config, db string, group, instances, capacity, clients int) {
	t.Helper()
	heard := &recorder{}
	var servers []*servicetest.Server
	for range instances {
		_, b := start(t, cfg, app.BookingService, db, app.Options{WrapHandler: heard.wrap, BookingGroup: group})
		servers = append(servers, b)
	}
	_, events := start(t, cfg, app.EventService, sqlite(t, "events"), app.Options{})
	_, evID := createEvent(t, events, "Last seat", capacity)
	for _, b := range servers {
		awaitEvent(t, b, evID)
	}

	sold, statuses := raceFor(t, servers, evID, clients)
	if statuses[http.StatusCreated] != capacity || statuses[http.StatusConflict] != clients-capacity || len(statuses) != 2 {
		t.Fatalf("statuses = %v, want %d x 201 and %d x 409", statuses, capacity, clients-capacity)
	}
	for _, b := range servers {
		if !brokertest.CheckIDs(t, "bookings stored", bookingIDs(t, b, evID), sold) {
			t.FailNow()
		}
	}
	// BookingService hears each event.booked once (its own, or the other
	// instance's); they change nothing.
	heard.awaitCount(t, contracts.EventBookedName, 1, sold...)
	for _, b := range servers {
		if v := awaitEvent(t, b, evID); v.Booked != capacity || v.Available != 0 {
			t.Fatalf("after the race: %+v, want %d booked, 0 available", v, capacity)
		}
	}
}

// raceFor sends clients bookings of one seat at once, spread over the
// instances, and returns the IDs sold and the count of each status.
func raceFor(t *testing.T, instances []*servicetest.Server, evID string, clients int) (sold []string, statuses map[int]int) {
	t.Helper()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		errs     []error
		startAll = make(chan struct{})
	)
	statuses = map[int]int{}
	for i := range clients {
		wg.Go(func() {
			<-startAll
			status, resp, err := instances[i%len(instances)].Try("POST", "/events/"+evID+"/bookings", fmt.Sprintf(`{"seats":1,"user_id":"user-%d"}`, i))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			statuses[status]++
			if status == http.StatusCreated {
				var b booking
				if err := json.Unmarshal(resp, &b); err != nil {
					errs = append(errs, err)
				}
				sold = append(sold, b.ID)
			}
		})
	}
	close(startAll) // all at once
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("transport errors: %v", errs)
	}
	return sold, statuses
}
