// Command myevents runs the whole MyEvents system in one process, with
// nothing to install but Go: an embedded Kafka, EventService and
// BookingService on in-memory stores. It plays a short story over real
// HTTP (a location, an event, bookings, a sold-out 409, a restart that
// rebuilds BookingService from the log) and shows every event as it lands
// in the Kafka log; then it keeps serving until Ctrl-C.
//
// Usage:
//
//	go run ./capstone/cmd/myevents                 # the story, then serve on :8181 and :8282 until Ctrl-C
//	go run ./capstone/cmd/myevents -story-only     # the story, then stop
//	go run ./capstone/cmd/myevents -v              # with the services' logs on stderr
//
// The stores are in memory on purpose: the embedded Kafka is in memory
// too, so the log and every copy of the state built from it start empty
// and vanish together, and every run prints the same story. (SQLite files
// would outlive the log: the next run would start with events the new log
// has never seen.)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"

	"example.com/myevents/capstone/internal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, a second one ends the process at once.
	context.AfterFunc(ctx, stop)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case err != nil && interrupted:
		// Ctrl-C before the story ended: run has closed what it opened.
		fmt.Fprintln(os.Stderr, "interrupted: stopped cleanly")
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "error:", app.OneLine(err))
		os.Exit(1)
	}
}

// run starts the system, plays the story to out and serves until ctx ends
// (with -story-only: until the story ended). Logs go to stderr.
func run(ctx context.Context, args []string, out, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("myevents", flag.ContinueOnError)
	fs.SetOutput(stderr)
	eventsAddr := fs.String("events-listen", "127.0.0.1:8181", "HTTP address of EventService")
	bookingsAddr := fs.String("bookings-listen", "127.0.0.1:8282", "HTTP address of BookingService")
	storyOnly := fs.Bool("story-only", false, "stop after the story instead of serving until Ctrl-C")
	verbose := fs.Bool("v", false, "log what the services do to stderr (default: warnings only)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: myevents takes flags only (see -h)", fs.Arg(0))
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	// Start the embedded Kafka: the real wire protocol, in memory, on a
	// free port of 127.0.0.1.
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return fmt.Errorf("starting the embedded Kafka: %w", err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()

	// Configure both services for it, with in-memory stores.
	// BookingService then rebuilds its state from the log at every start.
	bookingCfg := app.DefaultConfig(app.BookingService)
	bookingCfg.Listen, bookingCfg.Broker, bookingCfg.KafkaBrokers, bookingCfg.DB = *bookingsAddr, app.Kafka, brokers, "memory:"
	eventCfg := app.DefaultConfig(app.EventService)
	eventCfg.Listen, eventCfg.Broker, eventCfg.KafkaBrokers, eventCfg.DB = *eventsAddr, app.Kafka, brokers, "memory:"

	// Run the services until the end, whatever stops us: they stop when
	// told, EventService first (it only emits), then BookingService.
	sys := &system{ctx: context.WithoutCancel(ctx), log: log, bookingCfg: bookingCfg}
	defer func() { err = errors.Join(err, sys.stop()) }()
	if err := sys.startBookings(); err != nil {
		return err
	}
	if sys.events, err = app.Start(sys.ctx, eventCfg, app.Options{Logger: log, ListenFlag: "-events-listen"}); err != nil {
		return err
	}

	// Watch the log beside the services.
	t, err := openTap(brokers, bookingCfg.Topic)
	if err != nil {
		return err
	}
	defer t.close()

	fmt.Fprintln(out, "MyEvents: the whole system in one process")
	fmt.Fprintf(out, "  Kafka           %s (embedded, in memory), topic %s\n", strings.Join(brokers, ","), bookingCfg.Topic)
	fmt.Fprintf(out, "  EventService    %s (store: memory)\n", sys.events.URL)
	fmt.Fprintf(out, "  BookingService  %s (store: memory, rebuilt from the log at start-up)\n", sys.bookings.URL)
	fmt.Fprintln(out)

	s := &story{ctx: ctx, out: out, sys: sys, tap: t.records}
	if err := s.play(); err != nil {
		return err
	}

	if !*storyOnly {
		fmt.Fprintln(out)
		fmt.Fprintln(out, "Serving until Ctrl-C; every event that reaches Kafka is shown here. Try:")
		fmt.Fprintf(out, "  curl -s %s/events\n", sys.events.URL)
		fmt.Fprintf(out, "  curl -s %s/events/%s\n", sys.bookings.URL, s.eventID)
		fmt.Fprintf(out, "  curl -s -X POST %s/events/%s/bookings -d '{\"seats\":1,\"user_id\":\"you\"}'\n", sys.bookings.URL, s.eventID)
		printed := make(chan struct{})
		go func() {
			defer close(printed)
			for r := range t.records {
				fmt.Fprintln(out, r)
			}
		}()
		select {
		case <-ctx.Done():
		case <-sys.events.Done():
			err = fmt.Errorf("EventService stopped: %w", sys.events.Err())
		case <-sys.bookings.Done():
			err = fmt.Errorf("BookingService stopped: %w", sys.bookings.Err())
		}
		t.close()
		<-printed
		if err != nil {
			return err
		}
	}
	if err := sys.stop(); err != nil {
		return err
	}
	fmt.Fprintln(out, "stopped: both services shut down, the embedded Kafka and everything in it are gone")
	return nil
}

// system is the two running services.
type system struct {
	ctx        context.Context
	log        *slog.Logger
	bookingCfg app.Config
	events     *app.Running
	bookings   *app.Running
	handled    *counter // what the running BookingService heard
}

// startBookings starts BookingService with an empty store, counting the
// events it handles. The first start binds bookingCfg.Listen; a restart
// takes the same address again.
func (s *system) startBookings() error {
	cfg := s.bookingCfg
	if s.bookings != nil {
		cfg.Listen = s.bookings.Addr
	}
	s.handled = &counter{}
	r, err := app.Start(s.ctx, cfg, app.Options{Logger: s.log, ListenFlag: "-bookings-listen", WrapHandler: s.handled.wrap})
	if err != nil {
		return err
	}
	s.bookings = r
	return nil
}

// stop stops what runs, EventService first; it may be called again.
func (s *system) stop() error {
	var errs []error
	if s.events != nil {
		errs = append(errs, s.events.Stop())
	}
	if s.bookings != nil {
		errs = append(errs, s.bookings.Stop())
	}
	return errors.Join(errs...)
}
