// Command myevents runs the whole MyEvents system in one process, with
// nothing to install but Go: an embedded Kafka, EventService and
// BookingService on in-memory stores. It plays a short story over real
// HTTP (a location, an event, bookings, a sold-out 409, a restart that
// rebuilds BookingService from the log) and shows every event as it lands
// in the Kafka log; then it keeps serving until Ctrl-C.
//
// Beside the services it serves a live view, a web page on 127.0.0.1:8080
// that shows the system as it runs (the services and whether they are up,
// the topic's partitions or the queues, every event with where it landed
// and when BookingService applied it, each concert's seats) and whose
// buttons replay the lessons: create, book, 20 clients for the last seat,
// stop EventService, restart BookingService, send a poison message.
//
// Usage:
//
//	go run ./capstone/cmd/myevents                 # the story, then serve on :8181, :8282 and the live view on :8080 until Ctrl-C
//	go run ./capstone/cmd/myevents -story-only     # the story, then stop
//	go run ./capstone/cmd/myevents -v              # with the services' logs on stderr
//	go run ./capstone/cmd/myevents -broker amqp    # on RabbitMQ (-url, AMQP_URL, or the local broker): no story, the live view
//
// On Kafka the stores are in memory on purpose: the embedded Kafka is in
// memory too, so the log and every copy of the state built from it start
// empty and vanish together, and every run prints the same story. (SQLite
// files would outlive the log: the next run would start with events the
// new log has never seen.) On RabbitMQ a queue cannot be replayed, so
// BookingService keeps its state in a SQLite file in a temporary
// directory, removed at exit with the run's exchange and queues.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"

	"example.com/myevents/capstone/cmd/myevents/live"
	"example.com/myevents/capstone/internal/app"
)

func main() {
	app.Main(func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		err := run(ctx, args, stdout, stderr)
		if err != nil && ctx.Err() != nil {
			// Ctrl-C before the story ended: run has closed what it opened.
			return app.ErrInterrupted
		}
		return err
	})
}

// run starts the system and the live view, plays the story to out (on
// Kafka) and serves until ctx ends (with -story-only: until the story
// ended). Logs go to stderr.
func run(ctx context.Context, args []string, out, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("myevents", flag.ContinueOnError)
	fs.SetOutput(stderr)
	eventsAddr := fs.String("events-listen", "127.0.0.1:8181", "HTTP address of EventService")
	bookingsAddr := fs.String("bookings-listen", "127.0.0.1:8282", "HTTP address of BookingService")
	uiAddr := fs.String("ui-listen", "127.0.0.1:8080", "HTTP address of the live view (a web page); keep it on 127.0.0.1: its controls stop and start the services")
	broker := fs.String("broker", app.Kafka, "kafka (an embedded Kafka, nothing to install) or amqp (RabbitMQ at -url or AMQP_URL, default "+app.DefaultAMQPURL+")")
	rabbitURL := fs.String("url", "", "with -broker amqp: RabbitMQ's AMQP URL (default: AMQP_URL, else "+app.DefaultAMQPURL+")")
	exchange := fs.String("exchange", defaultExchange, "with -broker amqp: the exchange, which myevents deletes at exit")
	queue := fs.String("queue", defaultQueue, "with -broker amqp: BookingService's queue, which myevents deletes at start (left by an earlier run) and at exit")
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
	if *broker != app.Kafka && *broker != app.AMQP {
		return fmt.Errorf("unknown broker %q: use -broker kafka (embedded) or -broker amqp (RabbitMQ)", *broker)
	}
	if *broker == app.AMQP && *storyOnly {
		return errors.New("-story-only: the story plays on the embedded Kafka; with -broker amqp, open the live view and use its controls")
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	// Take the live view's port first: a busy port fails before anything
	// starts.
	uiLn, err := net.Listen("tcp", *uiAddr)
	if err != nil {
		return fmt.Errorf("listening for the live view on %s (is another program using the port? choose another with -ui-listen): %w", *uiAddr, err)
	}
	defer uiLn.Close()
	view := live.New(log)
	ui := &liveView{view: view, ln: uiLn, url: browserURL(uiLn.Addr())}
	defer ui.stop()

	if *broker == app.AMQP {
		names := rabbitNames{url: amqpURL(*rabbitURL), exchange: *exchange, queue: *queue}
		return runAMQP(ctx, out, log, ui, *eventsAddr, *bookingsAddr, names)
	}

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
	bookingCfg.HTTPAddr, bookingCfg.Broker, bookingCfg.KafkaBrokers, bookingCfg.DB = *bookingsAddr, app.Kafka, brokers, "memory:"
	eventCfg := app.DefaultConfig(app.EventService)
	eventCfg.HTTPAddr, eventCfg.Broker, eventCfg.KafkaBrokers, eventCfg.DB = *eventsAddr, app.Kafka, brokers, "memory:"

	// Run the services until the end, whatever stops us: they stop when
	// told, EventService first (it only emits), then BookingService.
	sys := newSystem(ctx, log, eventCfg, bookingCfg, view.Wrap)
	defer func() { err = errors.Join(err, sys.stop()) }()
	// Hold the controls until the story has played: it expects nothing
	// else in the log.
	view.Hold("the story is playing: the controls wait for it to end")
	if err := startBoth(sys); err != nil {
		return err
	}

	// Watch the log and its dead letters beside the services.
	t := newTap()
	title := fmt.Sprintf("Kafka %s (embedded, in memory)", strings.Join(brokers, ","))
	// The listener's dead-letter topic is "<topic>.dlq" (package kafka).
	watch, err := live.WatchKafka(brokers, bookingCfg.Topic, bookingCfg.Topic+".dlq", title, func(r live.Record) {
		view.Add(r)
		if r.DeadLetter == nil {
			t.add(r)
		}
	})
	if err != nil {
		return err
	}
	defer func() {
		t.close() // unblocks a watcher waiting for the story
		err = errors.Join(err, watch.Close())
	}()
	// Serve the page; at the end it stops first, so no control acts on
	// what is being shut down.
	ui.serve(ctx, live.Config{Broker: watch, EventsURL: sys.url(app.EventService), BookingsURL: sys.url(app.BookingService), Services: sys, Logger: log})
	defer func() { err = errors.Join(err, ui.stop()) }()

	fmt.Fprintln(out, "MyEvents: the whole system in one process")
	fmt.Fprintf(out, "  Kafka           %s (embedded, in memory), topic %s\n", strings.Join(brokers, ","), bookingCfg.Topic)
	fmt.Fprintf(out, "  EventService    %s (store: memory)\n", sys.url(app.EventService))
	fmt.Fprintf(out, "  BookingService  %s (store: memory, rebuilt from the log at start-up)\n", sys.url(app.BookingService))
	fmt.Fprintf(out, "  Live view       %s (open it in a browser)\n", ui.url)
	fmt.Fprintln(out)

	s := &story{ctx: ctx, out: out, sys: sys, tap: t.records}
	if err := s.play(); err != nil {
		return err
	}
	view.Release()

	if !*storyOnly {
		fmt.Fprintln(out)
		fmt.Fprintln(out, "Serving until Ctrl-C; every event that reaches Kafka is shown here. Try:")
		fmt.Fprintf(out, "  a browser on %s: the live view, to watch the system and drive it\n", ui.url)
		fmt.Fprintf(out, "  curl -s %s/events\n", sys.url(app.EventService))
		fmt.Fprintf(out, "  curl -s %s/events/%s\n", sys.url(app.BookingService), s.eventID)
		fmt.Fprintf(out, "  curl -s -X POST %s/events/%s/bookings -d '{\"seats\":1,\"user_id\":\"you\"}'   # 409: the story sold all 10 seats; the live view makes a concert with seats left\n", sys.url(app.BookingService), s.eventID)
		printed := make(chan struct{})
		go func() {
			defer close(printed)
			for r := range t.records {
				fmt.Fprintln(out, r)
			}
		}()
		err = waitForEnd(ctx, sys)
		t.close()
		<-printed
		if err != nil {
			return err
		}
	}
	// The page first, so no control acts on what is being shut down.
	if err := errors.Join(ui.stop(), sys.stop()); err != nil {
		return err
	}
	fmt.Fprintln(out, "stopped: both services shut down, the embedded Kafka and everything in it are gone")
	return nil
}

// startBoth starts BookingService, then EventService: on RabbitMQ,
// BookingService's queue must be bound before EventService emits.
func startBoth(sys *system) error {
	for _, service := range []string{app.BookingService, app.EventService} {
		if err := sys.Start(service); err != nil {
			return err
		}
	}
	return nil
}

// waitForEnd waits for Ctrl-C, or a service that stops on its own.
func waitForEnd(ctx context.Context, sys *system) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-sys.failed:
		return err
	}
}

// liveView is the live view's server.
type liveView struct {
	view *live.View
	ln   net.Listener
	url  string // where a browser opens it

	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// serve connects the view to what it watches and serves it until stop.
func (l *liveView) serve(ctx context.Context, cfg live.Config) {
	ctx, l.cancel = context.WithCancel(context.WithoutCancel(ctx))
	l.done = make(chan error, 1)
	l.view.Connect(ctx, cfg)
	go func() { l.done <- l.view.Serve(ctx, l.ln) }()
}

// stop stops serving and returns what serving returned; calling it again
// (or before serve) returns the same.
func (l *liveView) stop() error {
	l.once.Do(func() {
		if l.cancel == nil {
			return
		}
		l.cancel()
		l.err = <-l.done
	})
	return l.err
}

// browserURL is where a browser on this machine opens addr.
func browserURL(addr net.Addr) string {
	if tcp, ok := addr.(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		return fmt.Sprintf("http://127.0.0.1:%d", tcp.Port)
	}
	return "http://" + addr.String()
}

// amqpURL is -url, else AMQP_URL, else the local broker's.
func amqpURL(flagURL string) string {
	if flagURL != "" {
		return flagURL
	}
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return app.DefaultAMQPURL
}
