package live

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// How often the view asks the services and the broker.
const pollInterval = 250 * time.Millisecond

// The states of a service, as its /healthz answers.
const (
	stateUp          = "up"          // 200
	stateUnavailable = "unavailable" // 503: replaying, or a dependency is down
	stateDown        = "down"        // no answer: stopped
	stateOdd         = "odd"         // any other answer
)

// poll asks the services and the broker how they are, until ctx ends.
func (v *View) poll(ctx context.Context) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		v.pollOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (v *View) pollOnce(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if b := v.cfg.Broker; b != nil {
		view := b.View(ctx)
		v.set(func() { v.broker = view })
	}
	v.checkService(ctx, EventService, v.cfg.EventsURL)
	state := v.checkService(ctx, BookingService, v.cfg.BookingsURL)
	v.checkSeats(ctx, state)
}

// checkService asks a service's /healthz and records what it answered.
func (v *View) checkService(ctx context.Context, key, base string) string {
	asked := time.Now()
	status, msg, err := v.get(ctx, base+"/healthz", nil)
	state, detail := stateUp, ""
	switch {
	case err != nil:
		state, detail = stateDown, "no answer: "+shortError(err)
	case status == http.StatusServiceUnavailable:
		state, detail = stateUnavailable, "503 "+msg
	case status != http.StatusOK:
		state, detail = stateOdd, fmt.Sprintf("%d %s", status, msg)
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return state // the demo is stopping: nothing to record
	}
	v.observe(key, state, detail, asked)
	return state
}

// checkSeats asks BookingService about the newest concerts, if it can
// answer; otherwise it marks their numbers as last seen.
func (v *View) checkSeats(ctx context.Context, bookingState string) {
	v.mu.Lock()
	var ids []string
	for i := len(v.concerts) - 1; i >= 0; i-- {
		ids = append(ids, v.concerts[i].id)
	}
	v.mu.Unlock()

	for _, id := range ids {
		var view struct {
			Capacity  int `json:"capacity"`
			Booked    int `json:"booked"`
			Available int `json:"available"`
		}
		status, msg := 0, ""
		if bookingState == stateUp || bookingState == stateUnavailable {
			var err error
			status, msg, err = v.get(ctx, v.cfg.BookingsURL+"/events/"+id, &view)
			if err != nil {
				status, msg = 0, shortError(err)
			}
		}
		v.set(func() {
			c := v.byConcert[id]
			if c == nil {
				return // no longer shown
			}
			switch {
			case status == http.StatusOK:
				c.capacity, c.booked, c.avail, c.known, c.status = view.Capacity, view.Booked, view.Available, true, "ok"
			case status == http.StatusNotFound:
				c.status = "BookingService has not heard of it (404)"
			case status != 0:
				c.status = fmt.Sprintf("BookingService answered %d %s", status, msg)
			case bookingState == stateDown:
				c.status = "BookingService is down"
			default:
				c.status = "BookingService did not answer: " + msg
			}
		})
	}
}

// get sends a GET and returns the status with the error message of a JSON
// error body; a 200 body is decoded into into, if not nil.
func (v *View) get(ctx context.Context, url string, into any) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	return v.do(req, func(status int) bool { return status == http.StatusOK }, into)
}

// do sends req and returns the status with the error message of a JSON
// error body; a body whose status decode accepts is decoded into into, if
// not nil.
func (v *View) do(req *http.Request, decode func(status int) bool, into any) (int, string, error) {
	resp, err := v.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return 0, "", err
	}
	if decode(resp.StatusCode) && into != nil {
		if err := json.Unmarshal(body, into); err != nil {
			return 0, "", fmt.Errorf("decoding the answer of %s: %w", req.URL, err)
		}
	}
	return resp.StatusCode, errorMessage(body), nil
}

// errorMessage is the message of a {"error": "..."} body, or the body.
func errorMessage(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	return strings.TrimSpace(string(body))
}

// shortError keeps the end of a client error ("connection refused"),
// which is what the room needs to read.
func shortError(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 && i+2 < len(msg) {
		return msg[i+2:]
	}
	return msg
}
