package httpjson

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"example.com/myevents/contracts"
)

type sample struct {
	Name  string `json:"name"`
	Seats int    `json:"seats"`
	Rows  []row  `json:"rows,omitempty"`
}

type row struct {
	N int `json:"n"`
}

// decodeHandler decodes a sample and echoes it.
func decodeHandler() http.Handler {
	return Handle(slog.New(slog.DiscardHandler), func(w http.ResponseWriter, r *http.Request) error {
		var s sample
		if err := Decode(w, r, &s); err != nil {
			return err
		}
		Write(w, http.StatusOK, s)
		return nil
	})
}

// serve sends one request to h and returns what it answered.
func serve(h http.Handler, method, target, body string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, req)
	return rec
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name, body string
		status     int
		errPart    string
	}{
		{"valid", `{"name":"a","seats":2}`, 200, ""},
		{"valid with whitespace after", "{\"name\":\"a\"}\n  ", 200, ""},
		{"empty body", ``, 400, "the body is empty"},
		{"malformed", `{"name":`, 400, "invalid JSON body"},
		{"not an object", `[1,2]`, 400, "invalid JSON body: want a JSON object, got an array"},
		// null decodes into any Go value as "no change": the handler then
		// saw every field at its zero value and said seats was 0.
		{"null", `null`, 400, "invalid JSON body: want a JSON object, got null"},
		{"null after whitespace", " \n null", 400, "want a JSON object, got null"},
		{"a number", `2`, 400, "want a JSON object, got a number"},
		{"a string", `"seats"`, 400, "want a JSON object, got a string"},
		{"true", `true`, 400, "want a JSON object, got true"},
		{"wrong type", `{"seats":"two"}`, 400, "invalid JSON body"},
		{"unknown field", `{"name":"a","price":3}`, 400, `unknown field "price"`},
		// encoding/json matches names whatever their case and takes the
		// last of two equal keys; the API's names are exact.
		{"name in another case", `{"Name":"a","seats":2}`, 400, `unknown field "Name"`},
		{"nested name in another case", `{"name":"a","rows":[{"n":1},{"N":2}]}`, 400, `unknown field "N" in rows[1]`},
		{"duplicate key", `{"name":"a","seats":1,"seats":1000}`, 400, `the key "seats" appears twice`},
		{"nested duplicate key", `{"rows":[{"n":1,"n":2}]}`, 400, `the key "n" appears twice in rows[0]`},
		{"byte-order mark", "\ufeff{\"name\":\"a\"}", 400, "starts with a byte-order mark (U+FEFF)"},
		{"trailing object", `{"name":"a"} {"name":"b"}`, 400, "more data after the object"},
		{"trailing garbage", `{"name":"a"} ]`, 400, "invalid JSON body"},
		{"too large", `{"name":"` + strings.Repeat("x", MaxBody) + `"}`, 413, "larger than 65536 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := serve(decodeHandler(), "POST", "/", tc.body)
			body := rec.Body.Bytes()
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, body)
			}
			if got := rec.Header().Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type %q", got)
			}
			if tc.errPart == "" {
				return
			}
			var e map[string]string
			if err := json.Unmarshal(body, &e); err != nil || len(e) != 1 || !strings.Contains(e["error"], tc.errPart) {
				t.Errorf("body %s, want {\"error\": \"...%s...\"}", body, tc.errPart)
			}
		})
	}
}

func TestErrorsHideInternalDetails(t *testing.T) {
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&logged, nil))
	h := Handle(log, func(http.ResponseWriter, *http.Request) error {
		return errors.New("connecting to db: password=secret refused")
	})
	rec := serve(h, "GET", "/x", "")
	if rec.Code != 500 || strings.Contains(rec.Body.String(), "secret") || !strings.Contains(rec.Body.String(), `"error":"internal error"`) {
		t.Errorf("got %d %s, want 500 with a generic error", rec.Code, rec.Body)
	}
	if !strings.Contains(logged.String(), "connecting to db") {
		t.Errorf("the cause was not logged: %q", logged.String())
	}

	// A wrapped *Error keeps its status.
	h = Handle(log, func(http.ResponseWriter, *http.Request) error {
		return errors.Join(errors.New("context"), Errorf(http.StatusConflict, "sold out"))
	})
	rec = serve(h, "GET", "/x", "")
	if rec.Code != 409 || strings.TrimSpace(rec.Body.String()) != `{"error":"sold out"}` {
		t.Errorf("got %d %s", rec.Code, rec.Body)
	}
}

func TestNotFound(t *testing.T) {
	rec := serve(Handle(slog.Default(), NotFound), "GET", "/nowhere", "")
	if rec.Code != 404 || !strings.Contains(rec.Body.String(), `"error":"no route for GET /nowhere"`) {
		t.Errorf("got %d %s", rec.Code, rec.Body)
	}
}

func TestHealth(t *testing.T) {
	up := func(context.Context) error { return nil }
	down := func(context.Context) error { return errors.New("connection refused") }
	tests := []struct {
		name   string
		checks []Check
		status int
		body   string
	}{
		{"all up", []Check{{"store", up}, {"broker", up}}, 200, `{"status":"ok"}`},
		{"nil check skipped", []Check{{"store", up}, {"broker", nil}}, 200, `{"status":"ok"}`},
		{"broker down", []Check{{"store", up}, {"broker", down}}, 503, `{"error":"broker is down: connection refused"}`},
		{"store down", []Check{{"store", down}, {"broker", up}}, 503, `{"error":"store is down: connection refused"}`},
		// A joined error (sarama's client, errors.Join) is one line.
		{"joined error", []Check{{"broker", func(context.Context) error {
			return errors.Join(errors.New("dial tcp: connection refused"), errors.New("EOF"))
		}}}, 503, `{"error":"broker is down: dial tcp: connection refused; EOF"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := serve(Handle(slog.Default(), Health(tc.checks...)), "GET", "/healthz", "")
			if rec.Code != tc.status || strings.TrimSpace(rec.Body.String()) != tc.body {
				t.Errorf("got %d %s, want %d %s", rec.Code, rec.Body, tc.status, tc.body)
			}
		})
	}
}

// TestDecodeRefusesInvalidUTF8: bytes that are not UTF-8 are a 400, not
// silently replaced with U+FFFD by the JSON decoder.
func TestDecodeRefusesInvalidUTF8(t *testing.T) {
	for _, body := range []string{"{\"name\":\"a\xffb\"}", "{\"name\":\"\xc3\x28\"}", "{\"name\":\"\xed\xa0\x80\"}"} {
		rec := serve(decodeHandler(), "POST", "/", body)
		if rec.Code != 400 || !strings.Contains(rec.Body.String(), "not valid UTF-8") {
			t.Errorf("%q: %d %s, want 400 not valid UTF-8", body, rec.Code, rec.Body)
		}
	}
}

// TestPath: a path value the check refuses is a 400 naming it.
func TestPath(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("GET /events/{id}", Handle(slog.New(slog.DiscardHandler), func(w http.ResponseWriter, r *http.Request) error {
		id, err := Path(r, "id", "event id", contracts.CheckID)
		if err != nil {
			return err
		}
		Write(w, http.StatusOK, id)
		return nil
	}))
	for path, want := range map[string]string{
		"/events/ev1": `"ev1"`,
		"/events/%00": "event id holds a control character (U+0000) at byte 0",
		"/events/%FF": "event id is not valid UTF-8",
	} {
		rec := serve(mux, "GET", path, "")
		if !strings.Contains(rec.Body.String(), want) || (rec.Code == 200) != (path == "/events/ev1") {
			t.Errorf("GET %s = %d %s, want %s", path, rec.Code, rec.Body, want)
		}
	}
}

// TestDataErrorsAreNot500: a value the database refuses is the client's
// fault, never an internal error.
func TestDataErrorsAreNot500(t *testing.T) {
	refused := fmt.Errorf("storing event: %w", &pgconn.PgError{Code: "22021", Message: "invalid byte sequence"})
	rec := httptest.NewRecorder()
	WriteError(rec, httptest.NewRequest("GET", "/x", nil), slog.New(slog.DiscardHandler), refused)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("a data error answered %d %s, want 400", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	WriteError(rec, httptest.NewRequest("GET", "/x", nil), slog.New(slog.DiscardHandler), errors.New("a bug"))
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("an unknown error answered %d, want 500", rec.Code)
	}
}

// TestStoreOutageIs503: a store that is down (here PostgreSQL shut down
// by its administrator) is no fault of the request: 503, with a
// Retry-After, not 500.
func TestStoreOutageIs503(t *testing.T) {
	rec := httptest.NewRecorder()
	err := fmt.Errorf("booking: %w", &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"})
	WriteError(rec, httptest.NewRequest("POST", "/x", nil), slog.New(slog.DiscardHandler), err)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("an admin shutdown answered %d with Retry-After %q, want 503 with one", rec.Code, rec.Header().Get("Retry-After"))
	}
	if strings.Contains(rec.Body.String(), "administrator") {
		t.Errorf("the answer shows the store's error: %s", rec.Body)
	}
}

// TestClientGoneIsNotAnError: a client that hangs up (or times out) ends
// its request's context, and the store's call fails with it. That is the
// client's doing, not the service's: no 500, and no error in the log.
func TestClientGoneIsNotAnError(t *testing.T) {
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&logged, nil))
	h := Handle(log, func(_ http.ResponseWriter, r *http.Request) error {
		<-r.Context().Done() // the store's query, cut short
		return fmt.Errorf("reading event abc: %w", r.Context().Err())
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/events/abc", nil).WithContext(ctx))
	if rec.Code != StatusClientClosedRequest {
		t.Errorf("a request its client gave up answered %d %s, want %d", rec.Code, rec.Body, StatusClientClosedRequest)
	}
	if strings.Contains(logged.String(), "level=ERROR") || !strings.Contains(logged.String(), "reading event abc: context canceled") {
		t.Errorf("want the cause logged below ERROR, got %q", logged.String())
	}

	// Another error stays an error, even if the client has left
	// meanwhile: an outage must show.
	logged.Reset()
	rec = httptest.NewRecorder()
	Handle(log, func(http.ResponseWriter, *http.Request) error {
		return errors.New("reading event abc: connection refused")
	}).ServeHTTP(rec, httptest.NewRequest("GET", "/events/abc", nil).WithContext(ctx))
	if rec.Code != http.StatusInternalServerError || !strings.Contains(logged.String(), "level=ERROR") {
		t.Errorf("an outage while the client left answered %d and logged %q, want 500 and an error", rec.Code, logged.String())
	}

	// While the client waits, a deadline of the service's own is the
	// service's outage: a 503 to try again, logged as an error.
	logged.Reset()
	rec = serve(Handle(log, func(http.ResponseWriter, *http.Request) error {
		return fmt.Errorf("reading event abc: %w", context.DeadlineExceeded)
	}), "GET", "/events/abc", "")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(logged.String(), "level=ERROR") {
		t.Errorf("the service's own timeout answered %d and logged %q, want 503 and an error", rec.Code, logged.String())
	}
}

type base struct {
	Name string `json:"name"`
}

// withBase has base's fields as its own, as encoding/json sees them.
type withBase struct {
	base
	Seats int `json:"seats"`
}

// amount reads its own JSON, {"value": n}.
type amount struct{ n int }

func (a *amount) UnmarshalJSON(b []byte) error {
	var v struct {
		Value int `json:"value"`
	}
	err := json.Unmarshal(b, &v)
	a.n = v.Value
	return err
}

type withAmount struct {
	Price amount `json:"price"`
}

// TestDecodeRefusesEncodedBodies: a body sent compressed (or said to be)
// is a 415 that says so; it was read as JSON, and a real gzip body was a
// puzzling 400 "invalid JSON".
func TestDecodeRefusesEncodedBodies(t *testing.T) {
	for _, enc := range []string{"gzip", "br", "deflate, gzip"} {
		req := httptest.NewRequest("POST", "/", strings.NewReader(`{"name":"a","seats":2}`))
		req.Header.Set("Content-Encoding", enc)
		rec := httptest.NewRecorder()
		decodeHandler().ServeHTTP(rec, req)
		if rec.Code != http.StatusUnsupportedMediaType || !strings.Contains(rec.Body.String(), "Content-Encoding") {
			t.Errorf("Content-Encoding %s: %d %s, want 415 naming Content-Encoding", enc, rec.Code, rec.Body)
		}
	}
	req := httptest.NewRequest("POST", "/", strings.NewReader(`{"name":"a","seats":2}`))
	req.Header.Set("Content-Encoding", "identity")
	rec := httptest.NewRecorder()
	decodeHandler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Errorf("Content-Encoding identity: %d %s, want 200", rec.Code, rec.Body)
	}
}

// TestDecodeKeysOfEmbeddedAndSelfDecodingFields: the exact-name check
// knows the fields an embedded struct lends, and leaves the names of a
// type that reads its own JSON to it (repeated keys are refused still).
func TestDecodeKeysOfEmbeddedAndSelfDecodingFields(t *testing.T) {
	decode := func(v any, body string) error {
		req := httptest.NewRequest("POST", "/", strings.NewReader(body))
		return Decode(httptest.NewRecorder(), req, v)
	}
	for _, tc := range []struct {
		v          any
		body, want string // want: "" for no error
	}{
		{&withBase{}, `{"name":"a","seats":2}`, ""},
		{&withBase{}, `{"Name":"a","seats":2}`, `unknown field "Name"`},
		{&withAmount{}, `{"price":{"value":3}}`, ""},
		{&withAmount{}, `{"price":{"value":3,"value":4}}`, `the key "value" appears twice in price`},
	} {
		err := decode(tc.v, tc.body)
		if (tc.want == "" && err != nil) || (tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want))) {
			t.Errorf("Decode(%T, %s) = %v, want %q", tc.v, tc.body, err, tc.want)
		}
	}
}

// TestDeclaredOversizedBodyIsRefusedAtOnce: a request that declares a
// Content-Length over MaxBody gets 413 before anything of its body is
// read: it waited for the body until the server's read timeout (408
// after 15 s), and with Expect: 100-continue the server even invited
// the whole upload.
func TestDeclaredOversizedBodyIsRefusedAtOnce(t *testing.T) {
	srv := httptest.NewServer(decodeHandler())
	defer srv.Close()
	for _, expect := range []string{"", "Expect: 100-continue\r\n"} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// Ten bytes of the hundred thousand declared; the rest never comes.
		fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n%s\r\n{\"name\":\"", expect)
		if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%q: no answer while the body is still coming: %v", expect, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), `"error"`) {
			t.Errorf("%q: %d %s, want 413 with a JSON error", expect, resp.StatusCode, body)
		}
	}
}

// TestEvery503SaysWhenToTryAgain: a 503 a handler chose (the broker is
// down, nothing was stored) carries Retry-After as the store's does; it
// had none, so a client could not tell how long to wait.
func TestEvery503SaysWhenToTryAgain(t *testing.T) {
	h := Handle(slog.New(slog.DiscardHandler), func(http.ResponseWriter, *http.Request) error {
		return Errorf(http.StatusServiceUnavailable, "the message broker is unavailable, nothing was stored: try again later")
	})
	rec := serve(h, "POST", "/", "{}")
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("%d, Retry-After %q; want 503 with a Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
}

// TestA503ThatAsksToLookFirstHasNoRetryAfter: a 503 whose request may
// have been recorded after all ("look it up before you try again") must
// not tell clients to retry: one that follows Retry-After would book a
// second time.
func TestA503ThatAsksToLookFirstHasNoRetryAfter(t *testing.T) {
	h := Handle(slog.New(slog.DiscardHandler), func(http.ResponseWriter, *http.Request) error {
		e := Errorf(http.StatusServiceUnavailable, "the message broker has not confirmed booking b in time, and may still record it")
		e.LookFirst = true
		return e
	})
	rec := serve(h, "POST", "/", "{}")
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "" {
		t.Errorf("%d, Retry-After %q; want 503 without Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
}
