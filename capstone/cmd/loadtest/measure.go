package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"time"
)

// measured is one measured round of bookings against one setup.
type measured struct {
	setup string
	res   result // latencies sorted
}

// rate is the round's bookings per second.
func (m measured) rate() float64 { return float64(m.res.created) / m.res.elapsed.Seconds() }

// measure starts the services (unless they run already), warms up, books
// s.n seats of a fresh event from s.c clients and checks that every seat
// was sold exactly once. With s.cpuprofile it profiles the measured
// bookings.
func measure(ctx context.Context, s settings, log *slog.Logger) (m measured, err error) {
	// Start the services, unless they run already.
	events, bookings := s.eventsURL, s.bookingsURL
	if events == "" || bookings == "" {
		sys, err := startSystem(ctx, s, log)
		if err != nil {
			return m, err
		}
		defer func() { err = errors.Join(err, sys.stop()) }()
		events, bookings, m.setup = sys.events.URL, sys.bookings.URL, sys.describe
	} else {
		m.setup = "services at " + events + " and " + bookings
	}

	// One event to warm up on, one to measure, each with enough seats.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: s.c}}
	defer client.CloseIdleConnections()
	warm, err := newEvent(ctx, client, events, bookings, "warm-up", max(s.warmup, 1))
	if err != nil {
		return m, err
	}
	target, err := newEvent(ctx, client, events, bookings, "measured", s.n)
	if err != nil {
		return m, err
	}
	if _, err := hammer(ctx, client, bookings, warm, s.warmup, s.c); err != nil {
		return m, fmt.Errorf("warming up: %w", err)
	}
	stopProfile, err := startProfile(s.cpuprofile)
	if err != nil {
		return m, err
	}
	res, err := hammer(ctx, client, bookings, target, s.n, s.c)
	if perr := stopProfile(); err == nil {
		err = perr
	}
	if err != nil {
		return m, err
	}

	// Check that every seat was sold exactly once.
	var view struct{ Capacity, Booked int }
	if err := call(ctx, client, "GET", bookings+"/events/"+target, "", http.StatusOK, &view); err != nil {
		return m, err
	}
	if res.created != s.n || view.Booked != s.n {
		return m, fmt.Errorf("sold %d bookings (answers %v) and BookingService counts %d, want %d", res.created, res.statuses, view.Booked, s.n)
	}
	slices.Sort(res.latencies)
	m.res = res
	return m, nil
}

// print writes the report of one round.
func (m measured) print(out io.Writer, s settings) {
	res := m.res
	fmt.Fprintf(out, "setup:      %s; %d CPUs, GOMAXPROCS %d\n", m.setup, runtime.NumCPU(), runtime.GOMAXPROCS(0))
	fmt.Fprintf(out, "load:       %d bookings of 1 seat, %d concurrent clients, after %d warm-up bookings\n", s.n, s.c, s.warmup)
	fmt.Fprintf(out, "throughput: %.0f bookings/s (%d x 201 in %v)\n", m.rate(), res.created, res.elapsed.Round(time.Millisecond))
	fmt.Fprintf(out, "latency:    %s\n", m.latency())
}

// latency is the round's latency percentiles.
func (m measured) latency() string {
	l := m.res.latencies
	return fmt.Sprintf("p50 %v  p90 %v  p99 %v  max %v", pct(l, 50), pct(l, 90), pct(l, 99), l[len(l)-1].Round(10*time.Microsecond))
}

// startProfile starts a CPU profile into path (nothing if path is empty)
// and returns what stops it.
func startProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("creating the CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting the CPU profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("writing the CPU profile: %w", err)
		}
		return nil
	}, nil
}
