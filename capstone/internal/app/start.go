package app

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// Running is a service started with Start.
type Running struct {
	Service string // EventService or BookingService
	URL     string // base URL, such as http://127.0.0.1:8282
	Addr    string // host:port it listens on, to start it again at the same place

	cancel context.CancelFunc
	done   chan struct{}
	err    error
	once   sync.Once
}

// Start runs a service in the background (RunEventService or
// RunBookingService, after cfg.Service) and returns once it accepts HTTP
// connections, or with the error that kept it from starting. It stops
// when ctx ends or Stop is called. The myevents demo, the load generator
// and the end-to-end tests start services this way.
func Start(ctx context.Context, cfg Config, opt Options) (*Running, error) {
	var run func(context.Context, Config, Options) error
	switch cfg.Service {
	case EventService:
		run = RunEventService
	case BookingService:
		run = RunBookingService
	default:
		return nil, fmt.Errorf("starting: unknown service %q", cfg.Service)
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &Running{Service: cfg.Service, cancel: cancel, done: make(chan struct{})}
	ready := make(chan string, 1)
	userReady := opt.Ready
	opt.Ready = func(url string) {
		if userReady != nil {
			userReady(url)
		}
		ready <- url
	}
	go func() {
		defer close(r.done)
		r.err = run(ctx, cfg, opt)
	}()
	select {
	case url := <-ready:
		r.URL = url
		r.Addr = strings.TrimPrefix(url, "http://")
		return r, nil
	case <-r.done:
		cancel()
		return nil, fmt.Errorf("starting %s: %w", cfg.Service, r.err)
	}
}

// Done is closed when the service has stopped, asked to or not.
func (r *Running) Done() <-chan struct{} { return r.done }

// Err is what the service returned; call it after Done is closed.
func (r *Running) Err() error {
	<-r.done
	return r.err
}

// Stop shuts the service down gracefully and returns what it returned.
// Calling it again returns the same.
func (r *Running) Stop() error {
	r.once.Do(r.cancel)
	return r.Err()
}
