package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"time"

	"example.com/myevents/capstone/bookingservice"
	"example.com/myevents/capstone/eventservice"
	"example.com/myevents/capstone/internal/httpjson"
	"example.com/myevents/capstone/internal/sqldb"
	"example.com/myevents/capstone/msgqueue"
)

// ShutdownTimeout bounds how long the HTTP server waits for in-flight
// requests after the service was asked to stop.
const ShutdownTimeout = 15 * time.Second

// Options add to a run what flags do not say. The zero value is usable.
type Options struct {
	// Logger receives the service's diagnostics (default slog.Default()).
	Logger *slog.Logger
	// Ready, if set, is called with the service's base URL (such as
	// http://127.0.0.1:8282) once the HTTP server accepts connections.
	// A replaying BookingService answers 503 until it has caught up.
	Ready func(url string)
	// AddrFlag names how the user moves the service to another HTTP
	// address, for the error when its port is taken (default "-listen or
	// LISTEN_ADDR").
	AddrFlag string
	// WrapHandler, if set, wraps BookingService's broker handler: tests
	// and the myevents demo use it to watch (or hold back) the events the
	// service receives.
	WrapHandler func(msgqueue.Handler) msgqueue.Handler
	// HTTPTimeouts override DefaultHTTPTimeouts (zero fields keep them).
	HTTPTimeouts HTTPTimeouts
	// ShutdownGrace is how long a stopping service waits for the requests
	// in flight before it closes their connections (default
	// ShutdownTimeout).
	ShutdownGrace time.Duration
	// BookingGroup is BookingService's bookingservice.Options.Group: how
	// many bookings one transaction sells at most (0: the default; 1: one
	// at a time, for comparison).
	BookingGroup int
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.Default()
	}
	return o.Logger
}

// parts are what a running service holds. close releases them in the
// order the package documentation gives; nil parts are skipped.
type parts struct {
	listener msgqueue.Listener
	service  interface{ Close() error }
	emitter  msgqueue.Emitter
	store    interface{ Close() error }
}

func (p *parts) close() error {
	var errs []error
	step := func(what string, f func() error) {
		if err := f(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	if p.listener != nil {
		step("stopping the listener", p.listener.Close)
	}
	if p.service != nil {
		step("stopping the outbox relay", p.service.Close)
	}
	if p.emitter != nil {
		step("closing the emitter", p.emitter.Close)
	}
	if p.store != nil {
		step("closing the store", p.store.Close)
	}
	return errors.Join(errs...)
}

// wiring is what a service's wiring step works with: the run's context,
// configuration and logger, the parts it opens (run closes them, whatever
// happens), and what it hands back to run: the HTTP handler and, for a
// service that listens for events, the listener's end.
type wiring struct {
	ctx context.Context
	cfg Config
	opt Options
	log *slog.Logger
	parts
	// returned is closed when run returns, for goroutines of the wiring
	// that watch the service.
	returned <-chan struct{}

	handler   http.Handler // set by the wiring step
	listenErr <-chan error // set by a wiring step that listens for events
}

// openEmitter connects the service's emitter (see newEmitter) and keeps
// it in the parts to close. Its Health is the service's broker health.
func (w *wiring) openEmitter() (msgqueue.Emitter, error) {
	em, err := newEmitter(w.ctx, w.cfg, w.log)
	if err != nil {
		return nil, err
	}
	w.parts.emitter = em
	return em, nil
}

// RunEventService runs EventService with cfg until ctx ends, then shuts
// it down gracefully. It returns an error if it cannot start or cannot go
// on; a shutdown asked for by ctx returns nil.
func RunEventService(ctx context.Context, cfg Config, opt Options) error {
	cfg.Service = EventService
	return run(ctx, cfg, opt, wireEventService)
}

// RunBookingService runs BookingService with cfg until ctx ends, then
// shuts it down gracefully. It returns an error if it cannot start or
// cannot go on; a shutdown asked for by ctx returns nil.
func RunBookingService(ctx context.Context, cfg Config, opt Options) error {
	cfg.Service = BookingService
	return run(ctx, cfg, opt, wireBookingService)
}

// run is what both services do: check the configuration, take the HTTP
// port, let wire open the store, the broker connections and the service,
// serve until ctx ends, and close everything wire opened.
func run(ctx context.Context, cfg Config, opt Options, wire func(*wiring) error) (err error) {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := opt.logger().With("service", cfg.Service)

	// Take the port first: a busy port fails before anything connects.
	ln, err := bind(cfg.HTTPAddr, opt.AddrFlag)
	if err != nil {
		return err
	}
	defer ln.Close()

	returned := make(chan struct{})
	w := &wiring{ctx: ctx, cfg: cfg, opt: opt, log: log, returned: returned}
	defer func() {
		if err = errors.Join(err, w.parts.close()); err == nil {
			log.Info("stopped")
		}
	}()
	defer close(returned)

	if err := wire(w); err != nil {
		return err
	}
	return serve(ctx, ln, w.handler, w.listenErr, cfg, log, opt)
}

// wireEventService opens EventService's store, its emitter and the
// service.
func wireEventService(w *wiring) error {
	store, err := eventservice.OpenStore(w.ctx, w.cfg.DB)
	if err != nil {
		return err
	}
	w.store = store
	if kind, _ := sqldb.Parse(w.cfg.DB); kind == sqldb.Memory {
		w.log.Info("the store is in memory: locations and events are forgotten when the service stops")
	}
	em, err := w.openEmitter()
	if err != nil {
		return err
	}
	svc, err := eventservice.New(store, em, eventservice.Options{Logger: w.log, BrokerHealth: em.Health})
	if err != nil {
		return err
	}
	w.service, w.handler = svc, svc
	return nil
}

// wireBookingService opens BookingService's store, subscribes it to the
// events it handles, opens its emitter and the service, and starts
// listening.
func wireBookingService(w *wiring) error {
	store, err := bookingservice.OpenStore(w.ctx, w.cfg.DB)
	if err != nil {
		return err
	}
	w.store = store
	// Subscribe before anything else talks to the broker: with RabbitMQ
	// this declares and binds the queue, so no event emitted from now on
	// is lost, even before Listen runs.
	l, err := newBookingListener(w.ctx, w.cfg, w.log)
	if err != nil {
		return err
	}
	w.listener = l
	em, err := w.openEmitter()
	if err != nil {
		return err
	}
	svc, err := bookingservice.New(store, em, bookingservice.Options{Logger: w.log, BrokerHealth: em.Health, ListenerHealth: l.Health, Group: w.opt.BookingGroup})
	if err != nil {
		return err
	}
	w.service, w.handler = svc, svc

	// Listen until the shutdown closes the listener, not when ctx ends:
	// the HTTP server must stop first, and the handler must finish the
	// event it is applying.
	handler := msgqueue.Handler(svc.Handle)
	if w.opt.WrapHandler != nil {
		handler = w.opt.WrapHandler(handler)
	}
	listenCtx := context.WithoutCancel(w.ctx)
	listenErr := make(chan error, 1)
	go func() {
		// A window of deliveries (RabbitMQ) or of a partition's records
		// (Kafka) is applied in one store transaction, unless a wrapper
		// wants to see each event alone.
		if bl, ok := l.Listener.(msgqueue.BatchListener); ok && w.opt.WrapHandler == nil {
			listenErr <- bl.ListenBatch(listenCtx, handler, svc.HandleBatch)
			return
		}
		listenErr <- l.Listen(listenCtx, handler)
	}()
	w.listenErr = listenErr
	w.log.Info("listening for events", "on", l.describe, "events", bookingservice.Names())

	if l.caughtUp != nil {
		w.handler = untilCaughtUp(svc, l.caughtUp, l.Health)
		start := time.Now()
		go func() {
			select {
			case <-l.caughtUp:
				w.log.Info("caught up with the events log: answering requests", "took", time.Since(start).Round(time.Millisecond),
					"bookings_applied", svc.Applied())
			case <-w.ctx.Done():
			case <-w.returned: // the service may stop before ctx ends
			}
		}()
	}
	return nil
}

// bind takes the HTTP address; flag says how to choose another.
func bind(addr, flag string) (net.Listener, error) {
	if flag == "" {
		flag = "-listen or LISTEN_ADDR"
	}
	ln, err := net.Listen("tcp", addr)
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("listening for HTTP on %s (is another program using the port? choose another with %s): %w", addr, flag, err)
	case err != nil:
		return nil, fmt.Errorf("listening for HTTP on %s (write it as host:port, such as 127.0.0.1:8181, or :0 for any free port, with %s): %w", addr, flag, err)
	}
	return ln, nil
}

// HTTPTimeouts bound how long the HTTP server waits for a client. A client
// that sends its headers or its body slowly, or keeps an idle connection
// open, is cut off instead of holding a connection (and its goroutine)
// for ever.
type HTTPTimeouts struct {
	ReadHeader time.Duration // to read the request headers
	Read       time.Duration // to read the whole request, body included
	Write      time.Duration // from the end of the headers to the end of the response
	Idle       time.Duration // a kept-alive connection between two requests
}

// DefaultHTTPTimeouts are the timeouts a service runs with. Write leaves
// room for a request that waits for the broker (an emit times out after
// 5 s).
var DefaultHTTPTimeouts = HTTPTimeouts{ReadHeader: 5 * time.Second, Read: 15 * time.Second, Write: 30 * time.Second, Idle: 2 * time.Minute}

// withDefaults fills the zero fields from DefaultHTTPTimeouts.
func (t HTTPTimeouts) withDefaults() HTTPTimeouts {
	d := DefaultHTTPTimeouts
	for _, f := range []struct{ v, def *time.Duration }{{&t.ReadHeader, &d.ReadHeader}, {&t.Read, &d.Read}, {&t.Write, &d.Write}, {&t.Idle, &d.Idle}} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	return t
}

// newServer is the HTTP server of a service, with its timeouts.
func newServer(h http.Handler, t HTTPTimeouts, log *slog.Logger) *http.Server {
	t = t.withDefaults()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// serve answers HTTP requests on ln until ctx ends, the server fails or
// the listener (if any) stops; then it shuts the server down, letting
// in-flight requests finish.
func serve(ctx context.Context, ln net.Listener, h http.Handler, listenErr <-chan error, cfg Config, log *slog.Logger, opt Options) error {
	srv := newServer(h, opt.HTTPTimeouts, log)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	url := baseURL(ln.Addr())
	log.Info("serving HTTP", "url", url, "broker", cfg.Broker, "store", storeName(cfg.DB))
	if opt.Ready != nil {
		opt.Ready(url)
	}

	var failure error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-serveErr:
		failure = fmt.Errorf("serving HTTP on %s: %w", cfg.HTTPAddr, err)
	case err := <-listenErr:
		if err == nil {
			err = errors.New("it stopped unexpectedly")
		}
		failure = fmt.Errorf("listening for events: %w", err)
	}

	// Stop accepting, and wait for the requests in flight. One still
	// running after the grace period (a client still sending its body,
	// up to the read timeout) has its connection closed: the service
	// stops all the same, cleanly.
	grace := opt.ShutdownGrace
	if grace <= 0 {
		grace = ShutdownTimeout
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		if !errors.Is(err, context.DeadlineExceeded) {
			failure = errors.Join(failure, fmt.Errorf("shutting the HTTP server down: %w", err))
		} else {
			log.Warn("closing the connections of requests still in flight after the grace period", "grace", grace)
		}
		_ = srv.Close()
	}
	if failure == nil {
		log.Info("HTTP server stopped")
	}
	return failure
}

// untilCaughtUp answers 503 until caughtUp is closed. Before that, a
// replaying BookingService has not heard the whole log yet: it could
// answer 404 for an event it has not replayed yet, or sell seats whose
// event.booked is still ahead in the log. If the replay is stuck (health
// fails), the 503 says why.
func untilCaughtUp(next http.Handler, caughtUp <-chan struct{}, health health) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-caughtUp:
			next.ServeHTTP(w, r)
			return
		default:
		}
		msg := "BookingService is replaying the events log and not ready yet: try again shortly"
		if err := health(r.Context()); err != nil {
			msg = "BookingService cannot finish replaying the events log: " + err.Error()
		}
		w.Header().Set("Retry-After", "1")
		httpjson.Write(w, http.StatusServiceUnavailable, map[string]string{"error": msg})
	})
}

// baseURL is the URL clients on this machine reach addr at.
func baseURL(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return "http://" + addr.String()
	}
	host := tcp.IP.String()
	if tcp.IP == nil || tcp.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, fmt.Sprint(tcp.Port))
}

// storeName describes the store a DSN selects, without a password.
func storeName(dsn string) string {
	kind, err := sqldb.Parse(dsn)
	switch {
	case err != nil:
		return "unknown"
	case dsn == "":
		return "sqlite (file in the working directory)"
	}
	return string(kind)
}
