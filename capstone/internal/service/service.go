// Package service is the skeleton EventService and BookingService share:
// the HTTP mux with /healthz, a JSON 404 for unknown paths and a JSON 405
// for a known path with another method, the outbox
// publisher that hands each committed write's event to the broker, the
// logger, and Close. A service embeds a [*Skeleton], adds its own routes
// with [Skeleton.Route] and publishes through [Skeleton.Publish]; what is
// left in the service's package is its API and its store.
package service

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"time"

	"example.com/myevents/capstone/internal/httpjson"
	"example.com/myevents/capstone/internal/outbox"
	"example.com/myevents/capstone/msgqueue"
)

// Options configure a service. The zero value is usable.
type Options struct {
	// Logger receives the service's diagnostics (default slog.Default()).
	Logger *slog.Logger
	// BrokerHealth reports whether the broker connection is up, for
	// /healthz; nil means "assume it is".
	BrokerHealth func(context.Context) error
	// ListenerHealth reports whether the service's listener takes and
	// applies events, for /healthz as "event handling": a listener that
	// is stuck because the store cannot apply what it delivers is not a
	// broker that is down. nil means "assume it does".
	ListenerHealth func(context.Context) error
	// Outbox tunes the outbox relay of a SQL store.
	Outbox outbox.Options
}

// Store is what the skeleton needs of a service's store.
type Store interface {
	// Outbox returns the store's outbox, or nil if it keeps none.
	Outbox() outbox.Store
	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
}

// Skeleton is the part of a service that does not depend on its API: an
// http.Handler that also answers /healthz and unknown paths, and the
// outbox publisher.
type Skeleton struct {
	// Log is the service's logger.
	Log *slog.Logger
	pub *outbox.Publisher
	mux *http.ServeMux
	// deadline bounds a request's work (RequestDeadline).
	deadline time.Duration
}

// RequestDeadline bounds what a route's handler may spend on a request:
// its context ends then, and a store call still waiting fails, which the
// client gets as a 503 with Retry-After (httpjson.WriteError). It is well
// below the server's write timeout (30 s), so the answer is written
// before the server gives up on the connection: a client that got no
// answer at all might buy again what it bought.
const RequestDeadline = 10 * time.Second

// New returns the skeleton of the service called name over store,
// emitting through em. With a store that keeps an outbox it starts the
// outbox relay; Close stops it. The store and the emitter stay the
// caller's to close, after Close.
func New(name string, store Store, em msgqueue.Emitter, opt Options) (*Skeleton, error) {
	if store == nil || em == nil {
		return nil, fmt.Errorf("%s: New needs a store and an emitter", name)
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Outbox.Logger == nil {
		opt.Outbox.Logger = opt.Logger
	}
	s := &Skeleton{
		Log:      opt.Logger,
		pub:      outbox.NewPublisher(store.Outbox(), em, opt.Outbox),
		mux:      http.NewServeMux(),
		deadline: RequestDeadline,
	}
	s.Route("GET /healthz", httpjson.Health(
		httpjson.Check{Name: "store", Func: store.Ping},
		httpjson.Check{Name: "broker", Func: opt.BrokerHealth},
		httpjson.Check{Name: "event handling", Func: opt.ListenerHealth},
		httpjson.Check{Name: "event delivery", Func: s.pub.Health},
	))
	s.Route("/", s.unrouted)
	return s, nil
}

// methods are the methods unrouted looks for routes of, in the order
// Allow lists them.
var methods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// unrouted answers a request no route took: a JSON 405 with Allow when
// its path has routes for other methods (the catch-all "/" would
// otherwise keep net/http from answering 405), else a JSON 404.
func (s *Skeleton) unrouted(w http.ResponseWriter, r *http.Request) error {
	var allow []string
	for _, m := range methods {
		if m == r.Method {
			continue
		}
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
		if _, pattern := s.mux.Handler(probe); pattern != "/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) == 0 {
		return httpjson.NotFound(w, r)
	}
	list := strings.Join(allow, ", ")
	w.Header().Set("Allow", list)
	return httpjson.Errorf(http.StatusMethodNotAllowed, "%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, list)
}

// Route serves pattern (a net/http pattern such as "GET /events/{id}")
// with h; an error h returns becomes a JSON error response.
func (s *Skeleton) Route(pattern string, h httpjson.HandlerFunc) {
	s.mux.Handle(pattern, httpjson.Handle(s.Log, func(w http.ResponseWriter, r *http.Request) error {
		// The deadline is the handler's: httpjson.Handle still sees the
		// client's own context, and tells a client that left (499) from
		// a store too slow for the deadline (503).
		ctx, cancel := context.WithTimeout(r.Context(), s.deadline)
		defer cancel()
		return h(w, r.WithContext(ctx))
	}))
}

// ServeHTTP serves the routes. A path with "//", "." or ".." gets a JSON
// 400 that names its clean form, where net/http's mux would redirect to
// it with an HTML body (a POST with none), unlike every other error.
func (s *Skeleton) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The escaped path, as the mux matches it: an escaped "/" or "." is
	// part of one segment (an ID or a name), not a step to clean.
	if p := r.URL.EscapedPath(); p != "" {
		if clean := cleanPath(p); clean != p {
			httpjson.Write(w, http.StatusBadRequest, map[string]string{
				"error": fmt.Sprintf("the path %q is not in its clean form: send %s", p, clean)})
			return
		}
	}
	// A request without a path matches no pattern, not even the
	// catch-all "/" (a CONNECT names a host and port instead), and would
	// get the mux's own text/plain 404.
	if !strings.HasPrefix(r.URL.Path, "/") {
		httpjson.WriteError(w, r, s.Log, httpjson.NotFound(w, r))
		return
	}
	s.mux.ServeHTTP(w, r)
}

// cleanPath is p as net/http's mux wants it: rooted, without "//", "."
// or "..", its trailing slash kept.
func cleanPath(p string) string {
	clean := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	return clean
}

// Publish hands the event of a committed write to the broker (see
// outbox.Publisher.Publish): with an outbox it cannot fail for the
// broker's sake; without one, an event the broker refused has undone its
// write and the error wraps outbox.ErrNotPublished.
func (s *Skeleton) Publish(ctx context.Context, msg outbox.Message) error {
	return s.pub.Publish(ctx, msg)
}

// Publisher is the skeleton's outbox publisher, for a service that writes
// its marks in its own transactions (outbox.Publisher.TakeMarks).
func (s *Skeleton) Publisher() *outbox.Publisher { return s.pub }

// Close stops the outbox relay; unsent events stay in the outbox for the
// next start. Call it after the HTTP server (and the broker listener, if
// any) have stopped.
func (s *Skeleton) Close() error { return s.pub.Close() }

// FirstError returns the first non-nil error of errs.
func FirstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Compile-time check that the skeleton is an http.Handler.
var _ http.Handler = (*Skeleton)(nil)
