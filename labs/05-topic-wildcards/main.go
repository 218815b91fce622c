// Command 05-topic-wildcards shows which routing keys a topic exchange
// delivers to which binding patterns, including the cases that surprise
// people: # alone, # matching zero words, and * never matching zero words.
//
// It declares a topic exchange, binds one queue per pattern, publishes one
// message per routing key with publisher confirms, reads back what every
// queue received and prints the routing matrix.
//
// Usage:
//
//	go run ./labs/05-topic-wildcards [-url amqp://guest:guest@127.0.0.1:5672/] [-exchange lab05.wildcards] [-queue lab05.wildcards] [-keep]
//
// Without -keep everything the program creates disappears when it exits.
// With -keep the queues and their messages stay for five minutes, so you
// can look at them (rabbitmqctl list_queues name messages); they stay bound
// to the exchange, so until they are gone a run without -keep on the same
// exchange refuses to start.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"example.com/myevents/labs/labkit"
	amqp "github.com/rabbitmq/amqp091-go"
)

// routingKeys are the keys the program publishes with, one message each.
var routingKeys = []string{
	"event.created.europe",
	"event.created.asia",
	"event.booked.europe",
	"location.created.europe",
	"event.created",               // two words
	"event.created.europe.berlin", // four words
	"event",                       // one word
}

// binding is one queue's binding pattern and what it teaches.
type binding struct {
	column  string
	pattern string
	note    string
}

// bindings are the patterns, one queue each, in the order of the columns.
var bindings = []binding{
	{"A", "event.created.europe", "no wildcard: that exact key only"},
	{"B", "event.created.*", "* is exactly one word, never zero"},
	{"C", "event.*.europe", "* in the middle"},
	{"D", "*.*.europe", "any three words ending in europe"},
	{"E", "event.#", "# is zero or more words"},
	{"F", "event.created.#", "so it matches event.created too"},
	{"G", "#", "# alone matches every key"},
}

// defaultURL is the local development broker.
const defaultURL = "amqp://guest:guest@127.0.0.1:5672/"

// queueTTL is how long an unused queue lives (x-expires), so a queue kept
// with -keep, or left by a crash, cleans itself up.
const queueTTL = 5 * time.Minute

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	interrupted := ctx.Err() != nil // read it before stop, which cancels ctx as well
	stop()
	switch {
	case err != nil && (interrupted || errors.Is(err, context.Canceled)):
		// Ctrl-C: run has closed what it opened. 130 is what a shell
		// reports for a program ended by Ctrl-C (128 + SIGINT).
		fmt.Fprintln(os.Stderr, "interrupted: stopped cleanly")
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("05-topic-wildcards", flag.ContinueOnError)
	amqpURL := fs.String("url", "", "AMQP URL of the broker (default $AMQP_URL, else "+defaultURL+")")
	exchange := fs.String("exchange", "lab05.wildcards", "name of the topic exchange to declare (auto-delete: it goes with its last queue)")
	queuePrefix := fs.String("queue", "lab05.wildcards", "with -keep, the prefix of the queue names: <queue>.<binding pattern>")
	keep := fs.Bool("keep", false, "keep the queues and their messages at the end instead of deleting them (they expire after five minutes unused)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; see -h", fs.Args())
	}
	// The environment supplies the URL unless -url does; the fallback is
	// applied here, not as the flag's default, so that -h never prints a
	// password from AMQP_URL.
	if *amqpURL == "" {
		*amqpURL = labkit.EnvOr("AMQP_URL", defaultURL)
	}

	// Check the exchange's name before dialing (labkit.CheckExchange says
	// why): the capstone's "events" would hand this run's event.created
	// messages to BookingService.
	if err := labkit.CheckExchange(*exchange, "lab05.wildcards"); err != nil {
		return err
	}

	// Connect. The connection name shows up in rabbitmqctl list_connections.
	conn, err := labkit.DialAMQPContext(ctx, *amqpURL, "myevents-05-topic-wildcards")
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("opening a channel: %w", err)
	}
	defer ch.Close()

	// Declare the topic exchange. Auto-delete: RabbitMQ removes it once its
	// last queue is unbound, so a rerun starts from a clean exchange. If an
	// exchange of that name exists with other properties (another type, or
	// durable), it is someone else's: the broker refuses with 406
	// PRECONDITION_FAILED and the run stops here, leaving it alone.
	if err := declareExchange(ch, *exchange); err != nil {
		return err
	}

	// Without -keep, make sure no queue outside this run is bound to the
	// exchange: it would take copies of what this run publishes, and a
	// message that none of this run's queues wants would go to it instead
	// of coming back as unroutable. Most likely it is a queue an earlier
	// -keep run left (they stay bound until they expire). With -keep, a
	// rerun reuses those same queues. The check deletes the exchange when
	// nothing is bound to it, so declare it again afterwards.
	if !*keep {
		if err := checkUnused(ctx, conn, *exchange); err != nil {
			return err
		}
		if err := declareExchange(ch, *exchange); err != nil {
			return err
		}
	}

	// Declare one queue per pattern and bind it. By default the queues are
	// server-named and exclusive: they belong to this connection and are
	// deleted when it closes. With -keep they get names and outlive the
	// program until x-expires removes them.
	queues := make([]string, len(bindings))
	for i, b := range bindings {
		name, exclusive, queueArgs := "", true, amqp.Table(nil)
		if *keep {
			name, exclusive = *queuePrefix+"."+b.pattern, false
			queueArgs = amqp.Table{"x-expires": queueTTL.Milliseconds()}
		}
		q, err := ch.QueueDeclare(
			name,      // empty: the broker picks a unique name
			false,     // durable
			false,     // auto-delete
			exclusive, // exclusive
			false,     // no-wait
			queueArgs, // arguments
		)
		if err != nil {
			return fmt.Errorf("declaring the queue for %s: %w", b.pattern, err)
		}
		queues[i] = q.Name
		// An earlier -keep run may have left messages behind: start empty.
		if _, err := ch.QueuePurge(q.Name, false /* no-wait */); err != nil {
			return fmt.Errorf("purging queue %s: %w", q.Name, err)
		}
		if err := ch.QueueBind(q.Name, b.pattern, *exchange, false /* no-wait */, nil /* args */); err != nil {
			return fmt.Errorf("binding queue %s with %s: %w", q.Name, b.pattern, err)
		}
	}
	fmt.Fprintf(out, "exchange %s (topic, auto-delete)\n", *exchange)
	if *keep {
		fmt.Fprintf(out, "queues %s.<pattern>, kept for 5 minutes after the program exits\n", *queuePrefix)
	} else {
		fmt.Fprintln(out, "queues server-named and exclusive, deleted when the program exits")
	}

	// Publish one message per routing key, mandatory and confirmed. The
	// broker confirms a routed message only once every matching queue has
	// it, so after the last confirm the queues hold all they will ever get.
	if err := ch.Confirm(false /* no-wait */); err != nil {
		return fmt.Errorf("enabling publisher confirms: %w", err)
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, len(routingKeys)))
	for _, key := range routingKeys {
		pubCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		confirm, err := ch.PublishWithDeferredConfirmWithContext(pubCtx,
			*exchange,
			key,
			true,  // mandatory: return the message if no queue matches
			false, // immediate (not supported by RabbitMQ)
			amqp.Publishing{
				ContentType:  "text/plain",
				DeliveryMode: amqp.Persistent,
				MessageId:    key,
				Body:         []byte("published with routing key " + key),
			},
		)
		if err == nil {
			var acked bool
			acked, err = confirm.WaitContext(pubCtx)
			if err == nil && !acked {
				err = errors.New("the broker refused it (nack)")
			}
		}
		cancel()
		if err != nil {
			return fmt.Errorf("publishing with routing key %s: %w", key, err)
		}
	}
	// A returned message arrives before its confirm, so any return is
	// already waiting in the channel.
	select {
	case r := <-returns:
		return fmt.Errorf("no queue matched routing key %s: the broker returned the message (%s)", r.RoutingKey, r.ReplyText)
	default:
	}
	fmt.Fprintf(out, "published %d messages, every one confirmed\n", len(routingKeys))

	// Read what each queue actually received. Get without auto-ack, then
	// acknowledge everything at the end (or, with -keep, hand it back).
	received := map[string]map[string]bool{} // routing key -> pattern -> delivered
	var lastTag uint64
	for i, b := range bindings {
		for {
			d, ok, err := ch.Get(queues[i], false /* auto-ack */)
			if err != nil {
				return fmt.Errorf("reading queue %s: %w", queues[i], err)
			}
			if !ok {
				break // the queue is empty
			}
			lastTag = d.DeliveryTag
			if received[d.RoutingKey] == nil {
				received[d.RoutingKey] = map[string]bool{}
			}
			received[d.RoutingKey][b.pattern] = true
		}
	}
	if lastTag > 0 {
		if *keep {
			err = ch.Nack(lastTag, true /* multiple */, true /* requeue */)
		} else {
			err = ch.Ack(lastTag, true /* multiple */)
		}
		if err != nil {
			return fmt.Errorf("settling the messages read: %w", err)
		}
	}

	// Print the routing matrix: one row per key, one column per pattern.
	fmt.Fprintln(out)
	fmt.Fprintf(out, "%-6s %-20s  %s\n", "queue", "binding pattern", "rule")
	for _, b := range bindings {
		fmt.Fprintf(out, "%-6s %-20s  %s\n", b.column, b.pattern, b.note)
	}
	fmt.Fprintln(out)
	header := fmt.Sprintf("%-28s", "routing key")
	for _, b := range bindings {
		header += " " + b.column
	}
	fmt.Fprintln(out, header)
	for _, key := range routingKeys {
		row := fmt.Sprintf("%-28s", key)
		for _, b := range bindings {
			mark := "."
			if received[key][b.pattern] {
				mark = "x"
			}
			row += " " + mark
		}
		fmt.Fprintln(out, row)
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "x = the queue bound with that pattern received the message")

	// Check every cell against routes, this lab's exercise (solution.go;
	// the template is exercise.go), which predicts it from the pattern and
	// the key alone. A prediction the broker contradicts stops the run.
	for _, key := range routingKeys {
		for _, b := range bindings {
			predicted, err := routes(b.pattern, key)
			if err != nil {
				return err
			}
			if got := received[key][b.pattern]; predicted != got {
				return fmt.Errorf("routes(%q, %q) predicts delivered=%t, but the broker delivered=%t", b.pattern, key, predicted, got)
			}
		}
	}
	return nil
}

// declareExchange declares the lab's exchange: topic, not durable,
// auto-delete.
func declareExchange(ch *amqp.Channel, exchange string) error {
	err := ch.ExchangeDeclare(
		exchange,           // name
		amqp.ExchangeTopic, // type
		false,              // durable
		true,               // auto-delete
		false,              // internal
		false,              // no-wait
		nil,                // arguments
	)
	var amqpErr *amqp.Error
	switch {
	case errors.As(err, &amqpErr) && amqpErr.Code == amqp.PreconditionFailed:
		return fmt.Errorf("exchange %s already exists with other arguments, so it is not this lab's: pass -exchange with another name (%w)", exchange, err)
	case err != nil:
		return fmt.Errorf("declaring exchange %s: %w", exchange, err)
	}
	return nil
}

// checkUnused makes sure that no queue is bound to exchange, which run
// has just declared as its own (so it never deletes an exchange of another
// kind). It asks the broker to delete the exchange only if it is unused:
// that removes an exchange nobody is bound to (the one just declared, or
// one left by a run stopped before it bound a queue; an auto-delete
// exchange goes only with its last binding), and is refused with 406 PRECONDITION_FAILED
// while a queue is bound. The queues of a run that has just ended go a
// moment after its connection closes, so a refusal is retried for a
// second before it counts.
func checkUnused(ctx context.Context, conn *amqp.Connection, exchange string) error {
	deadline := time.Now().Add(time.Second)
	for {
		// A refusal closes the channel: use a fresh one each time.
		ch, err := conn.Channel()
		if err != nil {
			return fmt.Errorf("opening a channel: %w", err)
		}
		err = ch.ExchangeDelete(exchange, true /* if-unused */, false /* no-wait */)
		_ = ch.Close()
		var amqpErr *amqp.Error
		switch {
		case err == nil, errors.As(err, &amqpErr) && amqpErr.Code == amqp.NotFound:
			return nil
		case !errors.As(err, &amqpErr) || amqpErr.Code != amqp.PreconditionFailed:
			return fmt.Errorf("checking that no queue is bound to exchange %s: %w", exchange, err)
		case time.Now().After(deadline):
			return fmt.Errorf("exchange %s is in use: queues outside this run are bound to it, those of another run of this lab going on now, or those an earlier run kept with -keep (<queue>.<pattern>, lab05.wildcards.<pattern> by default), which expire 5 minutes after it; they would take copies of this run's messages, and hide a message that no queue of this run wants. Wait for the other run to end, delete the kept queues (rabbitmqctl list_queues name, then rabbitmqctl delete_queue <name>), wait until they expire, or pass -exchange with another name", exchange)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
