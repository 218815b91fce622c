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
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"example.com/myevents/capstone/internal/sqldb"
	"example.com/myevents/contracts"
)

// MaxBody is the largest request body a handler accepts. The biggest valid
// request, a location with its halls, fits in a few kilobytes; anything
// larger is answered with 413 before it is decoded.
const MaxBody = 64 << 10

// retryAfter is the Retry-After of a 503 (seconds): an outage of the
// store or the broker, which a client may try again after.
const retryAfter = "5"

// StatusClientClosedRequest is the status a request gets when its client
// gave up before the answer (it hung up, or its own timeout passed): the
// nginx convention, for the server's logs only, since nobody reads it.
const StatusClientClosedRequest = 499

// Error is an error the client caused or must be told about, with the HTTP
// status that says so.
type Error struct {
	Status  int
	Message string
	// LookFirst marks a 503 whose request may have been carried out
	// after all (the broker may still record its event): the client must
	// look before it tries again, so it gets no Retry-After.
	LookFirst bool
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
// status and message (a 503 with Retry-After, unless LookFirst), a value the database refused as invalid data as a
// 400 (the handlers check every value first: this is the safety net that
// keeps a client's bytes from ever causing a 500), an error after the
// client gave up as StatusClientClosedRequest, logged at info level, a
// store that is down, full or locked (sqldb.IsUnavailable) as a 503 with
// Retry-After, and anything else as a 500; the details of the last two are
// logged, not shown.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var e *Error
	if errors.As(err, &e) {
		if e.Status == http.StatusServiceUnavailable && !e.LookFirst && w.Header().Get("Retry-After") == "" {
			w.Header().Set("Retry-After", retryAfter) // every 503 says when to try again
		}
		Write(w, e.Status, map[string]string{"error": e.Message})
		return
	}
	if sqldb.IsDataError(err) {
		log.Warn("the store refused a value of a request", "method", r.Method, "path", r.URL.Path, "err", err)
		Write(w, http.StatusBadRequest, map[string]string{"error": "the request holds a value the store cannot keep"})
		return
	}
	if r.Context().Err() != nil && errors.Is(err, r.Context().Err()) {
		// The client gave up (or the server is closing its connection):
		// the call failed because the request's context ended, and
		// nobody waits for the answer. (Any other error stays an error,
		// even if the client has left meanwhile: an outage must show.)
		log.Info("the client went away before the answer", "method", r.Method, "path", r.URL.Path, "err", err)
		Write(w, StatusClientClosedRequest, map[string]string{"error": "the request was cancelled"})
		return
	}
	if sqldb.IsUnavailable(err) {
		// An outage, not the request: logged as an error all the same,
		// and answered as one the client may try again.
		log.Error("request failed: the store is unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", retryAfter)
		Write(w, http.StatusServiceUnavailable, map[string]string{"error": "the store is unavailable; try again shortly"})
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
// answers the ways a body can be wrong with an *Error: compressed (a
// Content-Encoding other than identity: 415), larger than [MaxBody]
// (413, at once when its Content-Length says so), not sent in time (408,
// see the server's read timeout), not valid UTF-8 (a JSON decoder would
// silently replace the bad bytes), malformed, not an object (null
// included, which would decode as "no change"), of the wrong type, with a
// field v does not have (names are exact: encoding/json alone would take
// "Seats" for "seats"), with a key twice in one object (encoding/json
// alone would keep the last), or followed by more data (400).
func Decode(w http.ResponseWriter, r *http.Request, v any) error {
	if enc := r.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
		return Errorf(http.StatusUnsupportedMediaType, "Content-Encoding %q is not supported: send the JSON as it is", enc)
	}
	// A body declared too large is refused before any of it is read (and
	// so before net/http answers Expect: 100-continue). Connection: close
	// keeps net/http from reading the unread body before it answers, to
	// reuse the connection.
	if r.ContentLength > MaxBody {
		w.Header().Set("Connection", "close")
		return Errorf(http.StatusRequestEntityTooLarge, "request body is larger than %d bytes", MaxBody)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		return readError(err)
	}
	if !utf8.Valid(body) {
		return Errorf(http.StatusBadRequest, "invalid JSON body: it is not valid UTF-8")
	}
	if bytes.HasPrefix(body, byteOrderMark) {
		return Errorf(http.StatusBadRequest, "invalid JSON body: it starts with a byte-order mark (U+FEFF); send the JSON without one")
	}
	// null decodes into any Go value as "no change", and another value
	// into a struct fails with Go's type names: say what is wanted.
	if got := notAnObject(body); got != "" {
		return Errorf(http.StatusBadRequest, "invalid JSON body: want a JSON object, got %s", got)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
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
	// The body is valid JSON that fits v; its keys must also be v's
	// names exactly, once each.
	if err := contracts.CheckKeys(body, v, false); err != nil {
		return Errorf(http.StatusBadRequest, "invalid JSON body: %v", err)
	}
	return nil
}

// notAnObject names the JSON value body starts with when it is not an
// object ("null", "an array", ...), and returns "" for an object, for an
// empty body and for what is no JSON value at all, which the decoder
// reports.
func notAnObject(body []byte) string {
	body = bytes.TrimLeft(body, " \t\r\n")
	if len(body) == 0 {
		return ""
	}
	switch c := body[0]; {
	case c == '[':
		return "an array"
	case c == '"':
		return "a string"
	case c == '-' || '0' <= c && c <= '9':
		return "a number"
	}
	for _, lit := range []string{"null", "true", "false"} {
		if bytes.HasPrefix(body, []byte(lit)) {
			return lit
		}
	}
	return ""
}

// byteOrderMark is U+FEFF in UTF-8, which some editors and Windows tools
// put before a file's text. JSON has none (RFC 8259, section 8.1), and
// encoding/json's own error for it names the character 'ï'.
var byteOrderMark = []byte("\ufeff")

// readError turns a failure to read the body into the *Error the client
// gets, if it is still there to get it.
func readError(err error) *Error {
	var tooBig *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.As(err, &tooBig):
		return Errorf(http.StatusRequestEntityTooLarge, "request body is larger than %d bytes", tooBig.Limit)
	case errors.As(err, &netErr) && netErr.Timeout():
		return Errorf(http.StatusRequestTimeout, "the request body did not arrive in time")
	}
	return Errorf(http.StatusBadRequest, "reading the request body: %v", err)
}

// decodeError turns a decoding error into the *Error the client gets.
func decodeError(err error) *Error {
	if errors.Is(err, io.EOF) {
		return Errorf(http.StatusBadRequest, "invalid JSON body: the body is empty")
	}
	return Errorf(http.StatusBadRequest, "invalid JSON body: %v", err)
}

// Path returns the path value called key, or a 400 *Error if check (such
// as contracts.CheckID) refuses it; what names it in the error ("event
// id"). An ID no store could hold is refused before it reaches one.
func Path(r *http.Request, key, what string, check func(field, value string) error) (string, error) {
	v := r.PathValue(key)
	if err := check(what, v); err != nil {
		return "", Errorf(http.StatusBadRequest, "%v", err)
	}
	return v, nil
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
				// One line: a joined error (errors.Join, sarama's
				// client) puts a newline between its parts.
				return Errorf(http.StatusServiceUnavailable, "%s is down: %s", c.Name, strings.ReplaceAll(err.Error(), "\n", "; "))
			}
		}
		Write(w, http.StatusOK, map[string]string{"status": "ok"})
		return nil
	}
}
