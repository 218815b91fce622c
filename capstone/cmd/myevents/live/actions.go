package live

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// request is the body of a control's POST; each control reads what it
// needs.
type request struct {
	Name  string `json:"name"`  // create: the concert's name
	Seats int    `json:"seats"` // create: the hall's capacity; book: seats to book
	Event string `json:"event"` // book, race, poison: the concert's ID
	On    bool   `json:"on"`    // slow: slow motion on or off
}

// badRequest is a control asked for something it cannot do: a 400.
type badRequest struct{ msg string }

func (e badRequest) Error() string { return e.msg }

// control is one button of the page. It returns the line the activity log
// shows, and whether it went as the lesson expects.
type control func(ctx context.Context, req request) (ok bool, text string, err error)

// controls are the page's buttons, by the path they are posted to.
func (v *View) controls() map[string]control {
	return map[string]control{
		"create":                 v.create,
		"book":                   v.book,
		"race":                   v.race,
		"poison":                 v.poison,
		"restart-bookingservice": v.restartBookings,
		"stop-eventservice":      v.stopper(EventService, "EventService stopped: BookingService goes on selling seats from its own copy (event collaboration); creating needs EventService"),
		"start-eventservice":     v.starter(EventService, "EventService started"),
		"stop-bookingservice":    v.stopper(BookingService, "BookingService stopped"),
		"start-bookingservice":   v.starter(BookingService, "BookingService started"),
		"slow":                   v.setSlow,
	}
}

// The dates every created concert gets: in the future, three hours long.
const (
	concertStart = 1795118400
	concertHours = 3
)

// create makes a location with one hall of req.Seats seats, and a concert
// in it, through EventService.
func (v *View) create(ctx context.Context, req request) (bool, string, error) {
	if req.Seats < 1 || req.Seats > 1000 {
		return false, "", badRequest{"seats must be 1 to 1000"}
	}
	if req.Name == "" || len(req.Name) > 60 {
		return false, "", badRequest{"the concert needs a name of at most 60 bytes"}
	}
	return v.createConcert(ctx, req.Name, req.Seats)
}

func (v *View) createConcert(ctx context.Context, name string, seats int) (bool, string, error) {
	v.mu.Lock()
	n := len(v.concerts) + 1
	v.mu.Unlock()
	loc := map[string]any{
		"name": fmt.Sprintf("Venue %d", n), "address": fmt.Sprintf("%d Harbour Road", n), "country": "NL",
		"open_time": 18, "close_time": 23, "halls": []map[string]any{{"name": "Main", "capacity": seats}},
	}
	var l struct {
		ID string `json:"id"`
	}
	status, msg, err := v.post(ctx, v.cfg.EventsURL+"/locations", loc, &l)
	if text, failed := outcome("POST /locations", status, msg, err, http.StatusCreated); failed {
		return false, fmt.Sprintf("create %q: %s: nothing created (creating needs EventService; booking does not)", name, text), nil
	}
	ev := map[string]any{
		"name": name, "location_id": l.ID, "hall": "Main",
		"start_date": concertStart + n*86400, "end_date": concertStart + n*86400 + concertHours*3600, "duration": concertHours * 60,
	}
	var e struct {
		ID string `json:"id"`
	}
	status, msg, err = v.post(ctx, v.cfg.EventsURL+"/events", ev, &e)
	if text, failed := outcome("POST /events", status, msg, err, http.StatusCreated); failed {
		return false, fmt.Sprintf("create %q: location %s created, but %s", name, l.ID, text), nil
	}
	return true, fmt.Sprintf("created %q with %d seats: POST /locations 201, POST /events 201 (id %s)", name, seats, e.ID), nil
}

// book books req.Seats seats of a concert for the next user.
func (v *View) book(ctx context.Context, req request) (bool, string, error) {
	name, err := v.concertName(req.Event)
	if err != nil {
		return false, "", err
	}
	if req.Seats < 1 || req.Seats > 1000 {
		return false, "", badRequest{"seats must be 1 to 1000"}
	}
	v.mu.Lock()
	user := []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"}[v.users%8]
	v.users++
	v.mu.Unlock()
	status, msg, err := v.post(ctx, v.cfg.BookingsURL+"/events/"+req.Event+"/bookings",
		map[string]any{"seats": req.Seats, "user_id": user}, nil)
	text, failed := outcome("POST /bookings", status, msg, err, http.StatusCreated)
	return !failed, fmt.Sprintf("%s books %d seat(s) of %q: %s", user, req.Seats, name, text), nil
}

// raceClients is how many clients want the last seat at once.
const raceClients = 20

// race leaves one seat of a concert (a box office books the rest) and
// then sends raceClients requests for it at the same moment: exactly one
// may win.
func (v *View) race(ctx context.Context, req request) (bool, string, error) {
	name, err := v.concertName(req.Event)
	if err != nil {
		return false, "", err
	}
	url := v.cfg.BookingsURL + "/events/" + req.Event
	var seats struct {
		Capacity  int `json:"capacity"`
		Available int `json:"available"`
		Booked    int `json:"booked"`
	}
	status, msg, err := v.get(ctx, url, &seats)
	if text, failed := outcome("GET /events/"+req.Event, status, msg, err, http.StatusOK); failed {
		return false, fmt.Sprintf("last seat of %q: %s", name, text), nil
	}
	prelude := ""
	if left := seats.Available - 1; left > 0 {
		for left > 0 {
			n := min(left, 1000)
			status, msg, err := v.post(ctx, url+"/bookings", map[string]any{"seats": n, "user_id": "box-office"}, nil)
			if text, failed := outcome("POST /bookings", status, msg, err, http.StatusCreated); failed {
				return false, fmt.Sprintf("last seat of %q: the box office could not book the other seats: %s", name, text), nil
			}
			left -= n
		}
		prelude = fmt.Sprintf(" (the box office first booked %d seats so that one was left)", seats.Available-1)
	}

	// Release every client at once.
	var (
		start  = make(chan struct{})
		wg     sync.WaitGroup
		mu     sync.Mutex
		counts = map[string]int{}
	)
	for i := range raceClients {
		wg.Go(func() {
			<-start
			status, _, err := v.post(ctx, url+"/bookings", map[string]any{"seats": 1, "user_id": fmt.Sprintf("client-%02d", i+1)}, nil)
			k := fmt.Sprint(status)
			if err != nil {
				k = "no answer"
			}
			mu.Lock()
			counts[k]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	status, msg, err = v.get(ctx, url, &seats)
	after := fmt.Sprintf("; now booked %d of %d", seats.Booked, seats.Capacity)
	if _, failed := outcome("GET", status, msg, err, http.StatusOK); failed {
		after = ""
	}
	text := fmt.Sprintf("last seat of %q, %d clients at once: %d × 201, %d × 409%s%s",
		name, raceClients, counts["201"], counts["409"], after, prelude)
	if others := raceClients - counts["201"] - counts["409"]; others > 0 {
		text += fmt.Sprintf("; %d other answers %v", others, counts)
	}
	return counts["201"] <= 1, text, nil
}

// concertName returns the name of a concert the view knows.
func (v *View) concertName(id string) (string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	c := v.byConcert[id]
	if c == nil {
		return "", badRequest{fmt.Sprintf("no concert %q has been seen on the broker", id)}
	}
	return c.name, nil
}

// stopper and starter stop or start a service.
func (v *View) stopper(service, done string) control {
	return func(ctx context.Context, _ request) (bool, string, error) {
		if err := v.cfg.Services.Stop(service); err != nil {
			return false, "stopping " + service + ": " + err.Error(), nil
		}
		v.waitFor(ctx, service, stateDown)
		return true, done, nil
	}
}

func (v *View) starter(service, done string) control {
	return func(ctx context.Context, _ request) (bool, string, error) {
		if err := v.cfg.Services.Start(service); err != nil {
			return false, "starting " + service + ": " + err.Error(), nil
		}
		return true, done, nil
	}
}

// waitFor polls a service until it is in state, for up to 10 s.
func (v *View) waitFor(ctx context.Context, service, state string) bool {
	base := map[string]string{EventService: v.cfg.EventsURL, BookingService: v.cfg.BookingsURL}[service]
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if v.checkService(ctx, service, base) == state {
			return true
		}
		pause(ctx, 50*time.Millisecond)
	}
	return false
}

func (v *View) setSlow(_ context.Context, req request) (bool, string, error) {
	v.set(func() { v.slow = req.On })
	if req.On {
		return true, fmt.Sprintf("slow motion on: after a start, BookingService waits %v before each event it has to catch up on", defaultPace), nil
	}
	return true, "slow motion off: BookingService catches up at full speed", nil
}

// outcome describes an answer; failed unless it has the status want.
func outcome(what string, status int, msg string, err error, want int) (string, bool) {
	switch {
	case err != nil:
		return what + ": no answer (" + shortError(err) + ")", true
	case status != want:
		return fmt.Sprintf("%s %d %s", what, status, msg), true
	}
	return fmt.Sprintf("%d", status), false
}

// post sends a JSON POST and returns the status and the error message of
// the answer; a 2xx body is decoded into into, if not nil.
func (v *View) post(ctx context.Context, url string, body any, into any) (int, string, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	return v.do(req, func(status int) bool { return status/100 == 2 }, into)
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
