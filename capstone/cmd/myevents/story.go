package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"sync"
	"time"

	"example.com/myevents/capstone/internal/app"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
)

// wait bounds every step that waits for the broker or a service.
const wait = 10 * time.Second

// story plays the demo over real HTTP, one numbered step at a time. After
// each request it waits for the event the request caused to appear in the
// Kafka log, so the output comes in the same order at every run.
type story struct {
	ctx     context.Context
	out     io.Writer
	sys     *system
	tap     <-chan record
	client  http.Client
	eventID string
}

// The bodies of the story's requests.
const (
	arena = `{"name":"Arena","address":"1 Harbour Road","country":"NL","open_time":18,"close_time":23,` +
		`"halls":[{"name":"Main","capacity":10}]}`
	concert = `{"name":"Aida","location_id":%q,"hall":"Main","start_date":1795118400,"end_date":1795129200,"duration":180}`
)

// eventView is BookingService's answer to GET /events/{id}.
type eventView struct {
	Capacity  int `json:"capacity"`
	Booked    int `json:"booked"`
	Available int `json:"available"`
}

func (v eventView) String() string {
	return fmt.Sprintf("capacity=%d booked=%d available=%d", v.Capacity, v.Booked, v.Available)
}

func (s *story) play() error {
	events, bookings := s.sys.url(app.EventService), s.sys.url(app.BookingService)

	// 1. Create a location: EventService stores it and emits
	// location.created, keyed by the location ID.
	s.say("1. EventService: create a location with one hall of 10 seats")
	var loc struct {
		ID string `json:"id"`
	}
	if err := s.call("POST", events, "/locations", arena, http.StatusCreated, &loc); err != nil {
		return err
	}
	s.say("   POST /locations -> 201 id=%s", loc.ID)
	if err := s.await(contracts.LocationCreatedName, loc.ID); err != nil {
		return err
	}

	// 2. Create an event in its hall: event.created carries the hall's
	// capacity, keyed by the event ID.
	s.say("2. EventService: create an event in that hall")
	var ev struct {
		ID       string `json:"id"`
		Capacity int    `json:"capacity"`
	}
	if err := s.call("POST", events, "/events", fmt.Sprintf(concert, loc.ID), http.StatusCreated, &ev); err != nil {
		return err
	}
	s.eventID = ev.ID
	s.say("   POST /events -> 201 id=%s capacity=%d", ev.ID, ev.Capacity)
	if err := s.await(contracts.EventCreatedName, ev.ID); err != nil {
		return err
	}

	// 3. BookingService heard event.created and keeps its own copy, with
	// the capacity: it never asks EventService.
	s.say("3. BookingService: it knows the event from the broker alone")
	view, err := s.eventView(bookings, ev.ID)
	if err != nil {
		return err
	}
	s.say("   GET /events/%s -> 200 %s", ev.ID, view)

	// 4. Book: each booking is stored, then announced as event.booked,
	// keyed by the event ID, so it lands on the event's partition.
	s.say("4. BookingService: alice books 4 seats, bob 6")
	sold := 0
	for _, b := range []struct {
		user  string
		seats int
	}{{"alice", 4}, {"bob", 6}} {
		body := fmt.Sprintf(`{"seats":%d,"user_id":%q}`, b.seats, b.user)
		if err := s.call("POST", bookings, "/events/"+ev.ID+"/bookings", body, http.StatusCreated, nil); err != nil {
			return err
		}
		sold += b.seats
		s.say("   POST /events/%s/bookings %s -> 201", ev.ID, body)
		if err := s.await(contracts.EventBookedName, ev.ID); err != nil {
			return err
		}
	}

	// 5. Sold out: the capacity check and the reservation are one step,
	// so the 11th seat is refused, and nothing reaches the broker.
	s.say("5. BookingService: carol wants 1 more seat")
	msg, err := s.callError("POST", bookings, "/events/"+ev.ID+"/bookings", `{"seats":1,"user_id":"carol"}`, http.StatusConflict)
	if err != nil {
		return err
	}
	s.say("   POST /events/%s/bookings -> 409 %s", ev.ID, msg)
	s.say("   nothing was booked, so nothing goes to Kafka")

	// 6. Restart BookingService with an empty store: it replays the log
	// from the oldest record and answers only once it has caught up.
	s.say("6. Restart BookingService with an empty memory store")
	if err := s.sys.Stop(app.BookingService); err != nil {
		return err
	}
	if err := s.sys.Start(app.BookingService); err != nil {
		return fmt.Errorf("restarting BookingService: %w", err)
	}
	if err := s.poll(func() error { return s.call("GET", bookings, "/healthz", "", http.StatusOK, nil) }); err != nil {
		return fmt.Errorf("waiting for BookingService to catch up with the log: %w", err)
	}
	n := s.sys.counts()
	s.say("   replayed %d events from the log: %d location.created, %d event.created, %d event.booked",
		n[contracts.LocationCreatedName]+n[contracts.EventCreatedName]+n[contracts.EventBookedName],
		n[contracts.LocationCreatedName], n[contracts.EventCreatedName], n[contracts.EventBookedName])
	if view, err = s.eventView(bookings, ev.ID); err != nil {
		return err
	}
	s.say("   GET /events/%s -> 200 %s", ev.ID, view)
	// The log holds every booking: rebuilt from it, the count must be
	// what was sold (the capstone exercise's applyOnce counts them).
	if view.Booked != sold {
		return fmt.Errorf("after the replay BookingService counts %d booked seats where %d were sold: applying the log must count each booking once", view.Booked, sold)
	}

	// Nothing but the events above may be in the log.
	select {
	case r, ok := <-s.tap:
		if ok {
			return fmt.Errorf("unexpected record in the Kafka log: %s", r)
		}
	default:
	}
	return nil
}

// say prints one line of the story.
func (s *story) say(format string, args ...any) { fmt.Fprintf(s.out, format+"\n", args...) }

// await waits for the next record in the log, which must be the event
// name with the partition key key, and prints it.
func (s *story) await(name, key string) error {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case r, ok := <-s.tap:
		if !ok {
			return fmt.Errorf("waiting for %s on Kafka: the tap stopped", name)
		}
		if r.Name != name || r.Key != key {
			return fmt.Errorf("waiting for %s key=%s on Kafka: got %s key=%s", name, key, r.Name, r.Key)
		}
		s.say("%s", r)
		return nil
	case <-timer.C:
		return fmt.Errorf("waiting for %s on Kafka: nothing came within %v", name, wait)
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

// eventView polls BookingService until it knows the event.
func (s *story) eventView(base, id string) (eventView, error) {
	var v eventView
	err := s.poll(func() error { return s.call("GET", base, "/events/"+id, "", http.StatusOK, &v) })
	if err != nil {
		return v, fmt.Errorf("waiting for BookingService to know event %s: %w", id, err)
	}
	return v, nil
}

// poll calls f until it returns nil or the wait is over.
func (s *story) poll(f func() error) error {
	deadline := time.Now().Add(wait)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) || s.ctx.Err() != nil {
			return err
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-s.ctx.Done():
			return s.ctx.Err()
		}
	}
}

// call sends a request and requires the status want; it decodes the JSON
// answer into into, unless into is nil.
func (s *story) call(method, base, path, body string, want int, into any) error {
	status, resp, err := s.do(method, base, path, body)
	if err != nil {
		return err
	}
	if status != want {
		return fmt.Errorf("%s %s%s answered %d %s, expected %d", method, base, path, status, bytes.TrimSpace(resp), want)
	}
	if into == nil {
		return nil
	}
	if err := json.Unmarshal(resp, into); err != nil {
		return fmt.Errorf("%s %s%s: decoding %s: %w", method, base, path, resp, err)
	}
	return nil
}

// callError sends a request that must fail with status want and returns
// the message of its {"error": "..."} body.
func (s *story) callError(method, base, path, body string, want int) (string, error) {
	var e struct {
		Error string `json:"error"`
	}
	if err := s.call(method, base, path, body, want, &e); err != nil {
		return "", err
	}
	return e.Error, nil
}

// do sends one request.
func (s *story) do(method, base, path, body string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(s.ctx, wait)
	defer cancel()
	var r io.Reader
	if body != "" {
		r = bytes.NewBufferString(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, r)
	if err != nil {
		return 0, nil, fmt.Errorf("building %s %s: %w", method, path, err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s%s: %w", method, base, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s%s: reading the answer: %w", method, base, path, err)
	}
	return resp.StatusCode, b, nil
}

// counter counts the events a BookingService handled, by name.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

// wrap is an app.Options.WrapHandler: it counts each event the handler
// applied.
func (c *counter) wrap(next msgqueue.Handler) msgqueue.Handler {
	return func(ctx context.Context, ev contracts.Event) error {
		err := next(ctx, ev)
		if err == nil {
			c.mu.Lock()
			if c.n == nil {
				c.n = map[string]int{}
			}
			c.n[ev.EventName()]++
			c.mu.Unlock()
		}
		return err
	}
}

func (c *counter) counts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}
