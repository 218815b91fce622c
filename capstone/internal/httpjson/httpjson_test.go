package httpjson

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

type sample struct {
	Name  string `json:"name"`
	Seats int    `json:"seats"`
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
		{"not an object", `[1,2]`, 400, "invalid JSON body"},
		{"wrong type", `{"seats":"two"}`, 400, "invalid JSON body"},
		{"unknown field", `{"name":"a","price":3}`, 400, `unknown field "price"`},
		{"trailing object", `{"name":"a"} {"name":"b"}`, 400, "more data after the object"},
		{"trailing garbage", `{"name":"a"} ]`, 400, "invalid JSON body"},
		{"too large", `{"name":"` + strings.Repeat("x", MaxBody) + `"}`, 413, "larger than 65536 bytes"},
	}
	srv := httptest.NewServer(decodeHandler())
	defer srv.Close()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL, "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if got := resp.Header.Get("Content-Type"); got != "application/json" {
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
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
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
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
	if rec.Code != 409 || strings.TrimSpace(rec.Body.String()) != `{"error":"sold out"}` {
		t.Errorf("got %d %s", rec.Code, rec.Body)
	}
}

func TestNotFound(t *testing.T) {
	rec := httptest.NewRecorder()
	Handle(slog.Default(), NotFound).ServeHTTP(rec, httptest.NewRequest("GET", "/nowhere", nil))
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
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Handle(slog.Default(), Health(tc.checks...)).ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
			if rec.Code != tc.status || strings.TrimSpace(rec.Body.String()) != tc.body {
				t.Errorf("got %d %s, want %d %s", rec.Code, rec.Body, tc.status, tc.body)
			}
		})
	}
}
