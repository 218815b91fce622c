package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"example.com/myevents/capstone/internal/httpjson"
	"example.com/myevents/capstone/internal/outbox"
	"example.com/myevents/capstone/internal/servicetest"
)

// store is a store without an outbox whose Ping answers err.
type store struct{ err error }

func (store) Outbox() outbox.Store                         { return nil }
func (s store) Ping(context.Context) error                 { return s.err }
func quiet() Options                                       { return Options{Logger: slog.New(slog.DiscardHandler)} }
func serve(t *testing.T, sk *Skeleton) *servicetest.Server { return servicetest.Serve(t, sk) }

func TestNewNeedsStoreAndEmitter(t *testing.T) {
	if _, err := New("svc", nil, &servicetest.Emitter{}, Options{}); err == nil || err.Error() != "svc: New needs a store and an emitter" {
		t.Errorf("New without a store: %v", err)
	}
	if _, err := New("svc", store{}, nil, Options{}); err == nil {
		t.Error("New without an emitter succeeded")
	}
}

func TestHealthz(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		store, broker, listener error
		status                  int
		part                    string
	}{
		{"up", nil, nil, nil, 200, ""},
		{"broker down", nil, errors.New("channel closed"), nil, 503, "broker is down: channel closed"},
		{"store down", errors.New("database closed"), nil, nil, 503, "store is down"},
		{"listener stuck", nil, nil, errors.New("the handler cannot apply events"), 503, "event handling is down: the handler cannot apply events"},
		// A broker that is down stops the listener too: the broker is named.
		{"broker and listener down", nil, errors.New("channel closed"), errors.New("not connected"), 503, "broker is down: channel closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opt := quiet()
			if tc.broker != nil {
				opt.BrokerHealth = func(context.Context) error { return tc.broker }
			}
			if tc.listener != nil {
				opt.ListenerHealth = func(context.Context) error { return tc.listener }
			}
			sk, err := New("svc", store{tc.store}, &servicetest.Emitter{}, opt)
			if err != nil {
				t.Fatal(err)
			}
			defer sk.Close()
			if tc.status == 200 {
				serve(t, sk).JSON("GET", "/healthz", "", 200, nil)
				return
			}
			serve(t, sk).WantError("GET", "/healthz", "", tc.status, tc.part)
		})
	}
}

// TestRoutes: a route's error is a JSON error with its status, and an
// unknown path is a JSON 404.
func TestRoutes(t *testing.T) {
	sk, err := New("svc", store{}, &servicetest.Emitter{}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Close()
	sk.Route("GET /teapot", func(http.ResponseWriter, *http.Request) error {
		return httpjson.Errorf(http.StatusTeapot, "short and stout")
	})
	srv := serve(t, sk)
	srv.WantError("GET", "/teapot", "", http.StatusTeapot, "short and stout")
	srv.WantError("GET", "/nowhere", "", 404, "no route for GET /nowhere")

	// A path that has routes, with another method: 405, and Allow says
	// which methods it has (GET answers HEAD too). It was a 404 "no route".
	sk.Route("POST /teapot/{id}/pour", func(http.ResponseWriter, *http.Request) error { return nil })
	for _, tc := range []struct{ method, path, allow string }{
		{"PUT", "/teapot", "GET, HEAD"},
		{"DELETE", "/healthz", "GET, HEAD"},
		{"GET", "/teapot/x/pour", "POST"},
		{"OPTIONS", "/teapot/x/pour", "POST"},
	} {
		rec := httptest.NewRecorder()
		sk.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != tc.allow ||
			!strings.Contains(rec.Body.String(), tc.method+" is not allowed on "+tc.path) {
			t.Errorf("%s %s answered %d %s with Allow %q, want 405 and Allow %q", tc.method, tc.path, rec.Code, rec.Body, rec.Header().Get("Allow"), tc.allow)
		}
	}
}

// TestConnectIsAJSON404: a CONNECT names a host and port, not a path, so
// net/http's mux matched no route, not even the catch-all, and answered
// its own text/plain "404 page not found".
func TestConnectIsAJSON404(t *testing.T) {
	sk, err := New("svc", store{}, &servicetest.Emitter{}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Close()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	req.Method, req.URL, req.RequestURI = http.MethodConnect, &url.URL{Host: "x:1"}, "x:1" // as net/http reads "CONNECT x:1 HTTP/1.1"
	sk.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotFound || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") ||
		!strings.Contains(rec.Body.String(), `"error"`) {
		t.Errorf("CONNECT x:1 answered %d %q (%s), want a JSON 404", rec.Code, rec.Body, rec.Header().Get("Content-Type"))
	}
}

// TestUncleanPathsAreJSONErrors: net/http's mux redirected a path with
// "//", "." or ".." to its clean form: a 307 or 301 with an HTML body
// (or none), where every other error is JSON. Such a path now gets a
// JSON 400 that names the clean one.
func TestUncleanPathsAreJSONErrors(t *testing.T) {
	sk, err := New("svc", store{}, &servicetest.Emitter{}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Close()
	sk.Route("GET /events/{id}", func(w http.ResponseWriter, _ *http.Request) error {
		httpjson.Write(w, http.StatusOK, map[string]string{})
		return nil
	})
	for _, tc := range []struct{ method, path, clean string }{
		{"GET", "//events/x", "/events/x"},
		{"GET", "/events/../events/x", "/events/x"},
		{"POST", "//events/x/bookings", "/events/x/bookings"},
		{"GET", "/events/./x", "/events/x"},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(tc.method, "/", nil)
		req.URL.Path = tc.path
		sk.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"error"`) || !strings.Contains(rec.Body.String(), tc.clean) {
			t.Errorf("%s %s answered %d %q (Location %q), want a JSON 400 naming %s", tc.method, tc.path, rec.Code, rec.Body, rec.Header().Get("Location"), tc.clean)
		}
	}
	// An ID or name with an escaped "/" or "." is one segment, as the
	// mux matches it: not a path to clean (an event named "AC//DC" or
	// ".." is fetched by name so).
	for _, target := range []string{"/events/x", "/events/AC%2F%2FDC", "/events/%2E%2E", "/events/a%2F..%2Fb"} {
		rec := httptest.NewRecorder()
		sk.ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
		if rec.Code != http.StatusOK {
			t.Errorf("GET %s answered %d %s, want 200", target, rec.Code, rec.Body)
		}
	}
}

// TestStuckStoreAnswers503InTime: a handler whose store call hangs gets
// its context ended at the skeleton's deadline and the client a 503 with
// Retry-After, well before the server's write timeout would cut the
// connection with no answer at all.
func TestStuckStoreAnswers503InTime(t *testing.T) {
	sk, err := New("svc", store{}, &servicetest.Emitter{}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Close()
	sk.deadline = 50 * time.Millisecond
	sk.Route("GET /stuck", func(_ http.ResponseWriter, r *http.Request) error {
		<-r.Context().Done() // a store call that waits on a lock
		return fmt.Errorf("reading: %w", r.Context().Err())
	})
	rec := httptest.NewRecorder()
	sk.ServeHTTP(rec, httptest.NewRequest("GET", "/stuck", nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("a stuck store answered %d %s (Retry-After %q), want 503 with Retry-After", rec.Code, rec.Body, rec.Header().Get("Retry-After"))
	}
}

func TestFirstError(t *testing.T) {
	a, b := errors.New("a"), errors.New("b")
	if got := FirstError(nil, a, b); got != a {
		t.Errorf("FirstError(nil, a, b) = %v", got)
	}
	if got := FirstError(nil, nil); got != nil {
		t.Errorf("FirstError(nil, nil) = %v", got)
	}
}
