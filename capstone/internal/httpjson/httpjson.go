// Package httpjson is the JSON-over-HTTP plumbing that EventService and
// BookingService share: strict request decoding, JSON responses, errors as
// {"error": "..."} with the right status, a JSON 404 for unknown paths, and
// the /healthz handler.
//
// Handlers are written as functions that return an error. An [*Error]
// carries its HTTP status and a message meant for the client; any other
// error is a bug or an outage: the client gets a 500 with a generic message
// and the details go to the log.
package httpjson

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// MaxBody is the largest request body a handler accepts. The biggest valid
// request, a location with its halls, fits in a few kilobytes; anything
// larger is answered with 413 before it is decoded.
const MaxBody = 64 << 10

// Error is an error the client caused or must be told about, with the HTTP
// status that says so.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

// Errorf builds an *Error with a formatted message.
func Errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Message: fmt.Sprintf(format, args...)}
}

// HandlerFunc is an HTTP handler that reports failure by returning an error
// instead of writing it.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Handle adapts h to an http.Handler: an error h returns becomes a JSON
// error response.
func Handle(log *slog.Logger, h HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			WriteError(w, r, log, err)
		}
	})
}

// WriteError answers with err as {"error": "..."}: an *Error with its own
// status and message, anything else as a 500 whose details are logged, not
// shown.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var e *Error
	if errors.As(err, &e) {
		Write(w, e.Status, map[string]string{"error": e.Message})
		return
	}
	log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	Write(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
}

// Write answers with status and v encoded as JSON.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// The status line is gone already; a client that hung up is not ours to
	// report.
	_ = json.NewEncoder(w).Encode(v)
}

// Decode reads exactly one JSON object from the request body into v. It
// answers the ways a body can be wrong with an *Error: larger than [MaxBody]
// (413), malformed, of the wrong type, with a field v does not have, or
// followed by more data (400).
func Decode(w http.ResponseWriter, r *http.Request, v any) error {
	body := http.MaxBytesReader(w, r.Body, MaxBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err != nil {
			return decodeError(err)
		}
		return Errorf(http.StatusBadRequest, "invalid JSON body: more data after the object")
	}
	return nil
}

// decodeError turns a decoding error into the *Error the client gets.
func decodeError(err error) *Error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return Errorf(http.StatusRequestEntityTooLarge, "request body is larger than %d bytes", tooBig.Limit)
	}
	if errors.Is(err, io.EOF) {
		return Errorf(http.StatusBadRequest, "invalid JSON body: the body is empty")
	}
	return Errorf(http.StatusBadRequest, "invalid JSON body: %v", err)
}

// NotFound answers every path no route matched with a JSON 404.
func NotFound(w http.ResponseWriter, r *http.Request) error {
	return Errorf(http.StatusNotFound, "no route for %s %s", r.Method, r.URL.Path)
}

// Check is one dependency /healthz asks about; it returns nil when the
// dependency is up.
type Check struct {
	Name string
	Func func(context.Context) error
}

// healthTimeout bounds how long /healthz waits for one check.
const healthTimeout = 2 * time.Second

// Health answers 200 {"status": "ok"} when every check passes and 503 with
// the first failing check's error otherwise. A check with a nil Func is
// skipped.
func Health(checks ...Check) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		for _, c := range checks {
			if c.Func == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
			err := c.Func(ctx)
			cancel()
			if err != nil {
				return Errorf(http.StatusServiceUnavailable, "%s is down: %v", c.Name, err)
			}
		}
		Write(w, http.StatusOK, map[string]string{"status": "ok"})
		return nil
	}
}
