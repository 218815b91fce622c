package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"example.com/myevents/capstone/bookingservice"
	"example.com/myevents/capstone/eventservice"
	"example.com/myevents/capstone/msgqueue/memory"
)

// Example wires both services to one broker (here the in-memory bus; the
// cmd programs use RabbitMQ or Kafka the same way), creates an event on
// EventService and books seats on BookingService, which learned the event
// from the broker.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger := slog.New(slog.DiscardHandler)
	bus := memory.New()

	// Open the stores: "memory:" here; "" is a SQLite file, or postgres://...
	bookingStore, err := bookingservice.OpenStore(ctx, "memory:")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer bookingStore.Close()
	eventStore, err := eventservice.OpenStore(ctx, "memory:")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer eventStore.Close()

	// Bind BookingService's queue for every event it handles before
	// anything is emitted, so nothing published meanwhile is lost.
	listener, err := bus.Listener("bookingservice", bookingservice.Names())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer listener.Close()

	// Build the services and start listening.
	bookings, err := bookingservice.New(bookingStore, bus.Emitter(), bookingservice.Options{Logger: logger})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer bookings.Close()
	go listener.Listen(ctx, bookings.Handle)
	events, err := eventservice.New(eventStore, bus.Emitter(), eventservice.Options{Logger: logger})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer events.Close()

	// Create a location with a hall of 10 seats, and an event there.
	var loc, ev struct{ ID string }
	call(events, "POST", "/locations", `{"name":"Arena","halls":[{"name":"Main","capacity":10}]}`, &loc)
	call(events, "POST", "/events", `{"name":"Aida","location_id":"`+loc.ID+`","hall":"Main","start_date":1795118400,"end_date":1795129200}`, &ev)

	// Wait until BookingService heard event.created.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if _, err := bookingStore.Show(ctx, ev.ID); err == nil {
			break
		}
		<-time.After(5 * time.Millisecond)
	}

	// Book 4 seats, then ask for 7 of the 6 left.
	call(bookings, "POST", "/events/"+ev.ID+"/bookings", `{"seats":4,"user_id":"alice"}`, nil)
	call(bookings, "POST", "/events/"+ev.ID+"/bookings", `{"seats":7,"user_id":"bob"}`, nil)
	var view struct{ Capacity, Booked, Available int }
	call(bookings, "GET", "/events/"+ev.ID, "", &view)
	fmt.Printf("capacity %d, booked %d, available %d\n", view.Capacity, view.Booked, view.Available)

	// Output:
	// POST /locations: 201
	// POST /events: 201
	// POST /events/{id}/bookings: 201
	// POST /events/{id}/bookings: 409
	// GET /events/{id}: 200
	// capacity 10, booked 4, available 6
}

// call sends one request to h, prints its status (with IDs shown as {id}:
// they are random) and decodes the answer into into.
func call(h http.Handler, method, path, body string, into any) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	if parts := strings.Split(path, "/"); len(parts) > 2 {
		path = strings.Replace(path, parts[2], "{id}", 1)
	}
	fmt.Printf("%s %s: %d\n", method, path, rec.Code)
	if into != nil {
		_ = json.Unmarshal(rec.Body.Bytes(), into)
	}
}
