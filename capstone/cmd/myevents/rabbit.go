package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/capstone/cmd/myevents/live"
	"example.com/myevents/capstone/endpoint"
	"example.com/myevents/capstone/internal/app"
	"example.com/myevents/capstone/msgqueue/rabbitmq"
)

// The names myevents uses on RabbitMQ, its own, like the labs': it never
// feeds a BookingService that runs on this broker with the real names
// ("events", "bookingservice"), and it may delete what it made.
const (
	defaultExchange = "myevents.events"
	defaultQueue    = "myevents.bookingservice"
)

// rabbitNames are the exchanges and queues of one run on RabbitMQ.
type rabbitNames struct{ url, exchange, queue string }

func (n rabbitNames) queues() []string {
	return []string{n.queue, rabbitmq.DeadLetterQueue(n.queue)}
}

// prepare makes sure the run starts with empty queues. BookingService
// keeps its state in a SQLite file that lives as long as the run, so
// whatever an earlier run left in the queues (one that did not stop
// cleanly) belongs to a store that is gone: the queues are deleted. A
// queue with a consumer belongs to a run still going: that is an error.
func (n rabbitNames) prepare(ctx context.Context, log *slog.Logger) error {
	return n.with(ctx, func(conn *amqp.Connection) error {
		for _, q := range n.queues() {
			ch, err := conn.Channel()
			if err != nil {
				return err
			}
			// Asking about a missing queue closes the channel: one channel
			// per question.
			info, err := rabbitmq.InspectQueue(ch, q)
			var amqpErr *amqp.Error
			switch {
			case errors.As(err, &amqpErr) && amqpErr.Code == amqp.NotFound:
				continue
			case err != nil:
				return fmt.Errorf("looking up queue %s: %w", q, err)
			case info.Consumers > 0:
				_ = ch.Close()
				return fmt.Errorf("queue %s already has %d consumer(s): another myevents (or a BookingService) uses it; stop it, or choose other names with -exchange and -queue", q, info.Consumers)
			}
			if _, err := ch.QueueDelete(q, false /* ifUnused */, false /* ifEmpty */, false /* noWait */); err != nil {
				return fmt.Errorf("deleting queue %s left by an earlier run: %w", q, err)
			}
			_ = ch.Close()
			log.Warn("deleted a queue an earlier run left behind", "queue", q, "messages", info.Messages)
		}
		return nil
	})
}

// cleanup deletes the queues and exchanges of the run.
func (n rabbitNames) cleanup() error {
	return n.with(context.Background(), func(conn *amqp.Connection) error {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		defer ch.Close()
		return rabbitmq.DeleteTopology(ch, n.exchange, n.queue)
	})
}

// with runs f on a connection of its own, dialled until ctx ends (Ctrl-C)
// or for at most the listener's dial timeout.
func (n rabbitNames) with(ctx context.Context, f func(*amqp.Connection) error) error {
	conn, err := rabbitmq.Dial(ctx, n.url, rabbitmq.WithConnectionName("myevents setup"))
	if err != nil {
		return err
	}
	defer conn.Close()
	return f(conn)
}

// runAMQP runs the demo on RabbitMQ: EventService on the memory store,
// BookingService on a SQLite file in a temporary directory (a queue cannot
// be replayed, so BookingService needs a store that outlives a restart;
// the run's store and the run's queues are made and removed together).
// There is no story: the live view's controls play the lessons. It serves
// until ctx ends.
func runAMQP(ctx context.Context, out io.Writer, log *slog.Logger, ui *liveView, eventsAddr, bookingsAddr string, names rabbitNames) (err error) {
	if err := names.prepare(ctx, log); err != nil {
		return err
	}
	cleaned := false
	cleanup := func() error {
		if cleaned {
			return nil
		}
		cleaned = true
		return names.cleanup()
	}
	defer func() { err = errors.Join(err, cleanup()) }()
	dir, err := os.MkdirTemp("", "myevents-")
	if err != nil {
		return fmt.Errorf("making a directory for BookingService's SQLite file: %w", err)
	}
	defer os.RemoveAll(dir)

	bookingCfg := app.DefaultConfig(app.BookingService)
	bookingCfg.HTTPAddr, bookingCfg.Broker, bookingCfg.AMQPURL = bookingsAddr, app.AMQP, names.url
	bookingCfg.DB = "sqlite:" + filepath.Join(dir, "bookingservice.db")
	bookingCfg.Exchange, bookingCfg.Queue = names.exchange, names.queue
	eventCfg := app.DefaultConfig(app.EventService)
	eventCfg.HTTPAddr, eventCfg.Broker, eventCfg.AMQPURL, eventCfg.DB = eventsAddr, app.AMQP, names.url, "memory:"
	eventCfg.Exchange = names.exchange

	sys := newSystem(ctx, log, eventCfg, bookingCfg, ui.view.Wrap)
	defer func() { err = errors.Join(err, sys.stop()) }()
	if err := startBoth(sys); err != nil {
		return err
	}
	watch, err := live.WatchAMQP(names.url, names.exchange, names.queue, "RabbitMQ "+endpoint.Redact(names.url), ui.view.Add)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, watch.Close()) }()
	ui.serve(ctx, live.Config{Broker: watch, EventsURL: sys.url(app.EventService), BookingsURL: sys.url(app.BookingService), Services: sys, Logger: log})
	defer func() { err = errors.Join(err, ui.stop()) }()

	fmt.Fprintln(out, "MyEvents: the whole system in one process, on RabbitMQ")
	fmt.Fprintf(out, "  RabbitMQ        %s, exchange %s, queue %s\n", endpoint.Redact(names.url), names.exchange, names.queue)
	fmt.Fprintf(out, "  EventService    %s (store: memory)\n", sys.url(app.EventService))
	fmt.Fprintf(out, "  BookingService  %s (store: SQLite in %s, removed at exit)\n", sys.url(app.BookingService), dir)
	fmt.Fprintf(out, "  Live view       %s (open it in a browser)\n", ui.url)
	fmt.Fprintln(out)
	fmt.Fprintln(out, "Serving until Ctrl-C. The story plays on Kafka only: here, open the live view and use its controls.")
	if err := waitForEnd(ctx, sys); err != nil {
		return err
	}
	if err := errors.Join(ui.stop(), sys.stop(), watch.Close(), cleanup()); err != nil {
		return err
	}
	fmt.Fprintf(out, "stopped: both services shut down; queue %s, its dead-letter queue and exchange %s deleted; the SQLite file removed at exit\n", names.queue, names.exchange)
	return nil
}
