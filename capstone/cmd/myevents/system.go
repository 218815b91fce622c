package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"example.com/myevents/capstone/internal/app"
	"example.com/myevents/capstone/msgqueue"
)

// system is the two running services. The story and the live view's
// controls stop and start them; a service that stops without being asked
// is reported on failed.
type system struct {
	ctx        context.Context
	log        *slog.Logger
	eventCfg   app.Config
	bookingCfg app.Config
	// wrap, if set, wraps BookingService's handler at every start
	// (the live view watches what it applies).
	wrap func(msgqueue.Handler) msgqueue.Handler

	failed chan error // a service stopped on its own

	mu       sync.Mutex
	running  map[string]*app.Running
	asked    map[*app.Running]bool // stops that were asked for
	handled  *counter              // what the running BookingService applied
	urls     map[string]string     // base URL of each service, fixed at its first start
	stopping bool
}

func newSystem(ctx context.Context, log *slog.Logger, eventCfg, bookingCfg app.Config, wrap func(msgqueue.Handler) msgqueue.Handler) *system {
	return &system{
		ctx: context.WithoutCancel(ctx), log: log, eventCfg: eventCfg, bookingCfg: bookingCfg, wrap: wrap,
		failed:  make(chan error, 2),
		running: map[string]*app.Running{}, asked: map[*app.Running]bool{}, urls: map[string]string{},
	}
}

// Start starts a service that is not running: BookingService with an
// empty handled count (and, on the memory store, an empty store that it
// rebuilds from the log). A service started before takes its address
// again.
func (s *system) Start(service string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return errors.New("the demo is stopping")
	}
	if s.running[service] != nil {
		return fmt.Errorf("%s is running already", service)
	}
	cfg, opt := s.eventCfg, app.Options{Logger: s.log, AddrFlag: "-events-listen"}
	if service == app.BookingService {
		s.handled = &counter{}
		cfg, opt.AddrFlag = s.bookingCfg, "-bookings-listen"
		opt.WrapHandler = s.handled.wrap
		if s.wrap != nil {
			opt.WrapHandler = func(h msgqueue.Handler) msgqueue.Handler { return s.wrap(s.handled.wrap(h)) }
		}
	}
	if url := s.urls[service]; url != "" {
		cfg.HTTPAddr = url[len("http://"):]
	}
	r, err := app.Start(s.ctx, cfg, opt)
	if err != nil {
		return err
	}
	s.running[service] = r
	s.urls[service] = r.URL
	go s.watch(service, r)
	return nil
}

// watch reports r on failed if it stops without being asked.
func (s *system) watch(service string, r *app.Running) {
	<-r.Done()
	s.mu.Lock()
	asked := s.asked[r]
	delete(s.asked, r)
	if s.running[service] == r {
		delete(s.running, service)
	}
	s.mu.Unlock()
	if !asked {
		s.failed <- fmt.Errorf("%s stopped: %w", service, r.Err())
	}
}

// errNotRunning is what Stop says about a service that does not run.
var errNotRunning = errors.New("not running")

// Stop stops a running service and waits until it has.
func (s *system) Stop(service string) error {
	s.mu.Lock()
	r := s.running[service]
	if r == nil {
		s.mu.Unlock()
		return fmt.Errorf("%s: %w", service, errNotRunning)
	}
	s.asked[r] = true
	delete(s.running, service)
	s.mu.Unlock()
	if err := r.Stop(); err != nil {
		return fmt.Errorf("stopping %s: %w", service, err)
	}
	return nil
}

// url is a service's base URL.
func (s *system) url(service string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.urls[service]
}

// counts is what the running BookingService applied, by event name.
func (s *system) counts() map[string]int {
	s.mu.Lock()
	h := s.handled
	s.mu.Unlock()
	return h.counts()
}

// stop stops what runs, EventService first, and refuses any later Start;
// it may be called again.
func (s *system) stop() error {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	var errs []error
	for _, service := range []string{app.EventService, app.BookingService} {
		if err := s.Stop(service); err != nil && !errors.Is(err, errNotRunning) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
