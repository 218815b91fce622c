// Command 02-declare-exchange shows how a client declares a durable topic
// exchange like the capstone's "events", that declaring it again is
// harmless, and what happens
// when a declaration contradicts what exists: the broker answers 406
// PRECONDITION_FAILED and closes the channel, not the connection, so the
// program opens a new channel and carries on.
//
// It also shows how to ask what exists: a passive declare succeeds for an
// existing name, whatever type it asks for, and fails with 404 NOT_FOUND
// (closing that channel too) for a missing one.
//
// Usage:
//
//	go run ./labs/02-declare-exchange [-url amqp://guest:guest@127.0.0.1:5672/] [-exchange lab02.events] [-keep]
//
// The exchange is the lab's own, lab02.events, declared exactly as the
// capstone's services declare "events" but under another name, so that the
// lab never touches what the services use. It is deleted at the end (also
// when a step fails) unless -keep is given; the delete is if-unused, so an
// exchange that queues are bound to, such as the capstone's "events" named
// with -exchange, is never deleted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"example.com/myevents/labs/labkit"
	amqp "github.com/rabbitmq/amqp091-go"
)

// defaultURL is the local development broker.
const defaultURL = "amqp://guest:guest@127.0.0.1:5672/"

// labExchange is the lab's own exchange, declared like "events", the
// exchange every service of the workbench publishes to.
const labExchange = "lab02.events"

// replyTimeout bounds how long we wait for the library to report a channel
// closure it has already seen.
const replyTimeout = 5 * time.Second

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
	fs := flag.NewFlagSet("02-declare-exchange", flag.ContinueOnError)
	amqpURL := fs.String("url", "", "AMQP URL of the broker (default $AMQP_URL, else "+defaultURL+")")
	exchange := fs.String("exchange", labExchange, "name of the durable topic exchange to declare (deleted at the end unless -keep, and only if no queue is bound to it)")
	keep := fs.Bool("keep", false, "keep the exchange at the end instead of deleting it")
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
	// applied here so that -h never prints a password from AMQP_URL.
	if *amqpURL == "" {
		*amqpURL = labkit.EnvOr("AMQP_URL", defaultURL)
	}
	name := *exchange
	if name == "" || strings.HasPrefix(name, "amq.") {
		// The broker would answer 403, which reads as missing permissions.
		return fmt.Errorf("-exchange must not be empty or start with \"amq.\": the broker reserves those names; pick another name, got %q", name)
	}
	missing := name + ".missing" // a name nobody declares, for the 404 step

	// Connect. One connection for the whole run: the point of this lab is
	// that it survives a failed declaration.
	conn, err := labkit.DialAMQPContext(ctx, *amqpURL, "myevents-02-declare-exchange")
	if err != nil {
		return err
	}
	defer conn.Close() // harmless after the explicit Close at the end
	fmt.Fprintf(out, "connected to %s (local port %d)\n", labkit.Redact(*amqpURL), localPort(conn))
	connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))

	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("opening a channel: %w", err)
	}

	// Declare the exchange. Publishers write to an exchange; the exchange
	// routes each message to the queues bound to it. A topic exchange
	// matches the routing key (the event name, e.g. "event.created")
	// against binding patterns such as "event.*" or "#". declareExchange,
	// this lab's exercise (solution.go; the template is exercise.go),
	// declares it durable, not auto-delete, not internal, and recognises
	// the broker's refusal.
	if err := declareExchange(ch, name); err != nil {
		return explainDeclareError(name, err)
	}
	fmt.Fprintf(out, "declared exchange %q: type topic, durable, not auto-delete, not internal, no args\n", name)
	// From here on the exchange is ours, as declared: whatever happens
	// below, delete it when we leave (unless -keep). An exchange of that
	// name with other arguments was refused above and is left alone.
	deleted := *keep
	defer func() {
		if !deleted {
			_, _ = deleteExchange(conn, name)
		}
	}()

	// Declare it again with the same arguments. Declaring means "make sure
	// this exists as described": when it already does, the broker simply
	// says ok. That is why every service declares the topology it needs at
	// start-up instead of relying on someone having created it.
	if err := declareExchange(ch, name); err != nil {
		return explainDeclareError(name, err)
	}
	fmt.Fprintln(out, "declared it again with the same arguments: ok, nothing changed")

	// Now contradict what exists: same name, type direct. The broker never
	// changes an existing exchange. It refuses with 406 PRECONDITION_FAILED,
	// a channel-level error: the broker closes this channel and keeps the
	// connection (and its other channels) open.
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	err = ch.ExchangeDeclare(
		name,     // name
		"direct", // type: differs from what exists
		true,     // durable
		false,    // auto-delete
		false,    // internal
		false,    // no-wait
		nil,      // args
	)
	var refusal *amqp.Error
	switch {
	case err == nil:
		// Only with no-wait on (try it): the call returned before the
		// broker answered, so it cannot report the refusal. The refusal
		// still comes, on the channel's NotifyClose below.
		fmt.Fprintf(out, "declared %q as direct with no-wait: the call returned nil without waiting for the broker's answer\n", name)
	case errors.As(err, &refusal) && refusal.Code == amqp.PreconditionFailed:
		fmt.Fprintf(out, "declared %q as direct instead: refused, code %d: %s\n", name, refusal.Code, refusal.Reason)
	default:
		return fmt.Errorf("redeclaring exchange %q as direct: want 406 PRECONDITION_FAILED, got %v", name, err)
	}

	// The channel's NotifyClose reports the same error; the connection's
	// reports nothing, because the connection is fine.
	select {
	case closeErr := <-chClosed:
		if closeErr == nil {
			return errors.New("the channel closed without a reason")
		}
		fmt.Fprintf(out, "NotifyClose on that channel: code %d; channel closed: %t, connection closed: %t\n",
			closeErr.Code, ch.IsClosed(), conn.IsClosed())
		if err == nil { // no-wait: this is where the refusal surfaced
			fmt.Fprintf(out, "  the refusal arrived here, after the call had returned: %s\n", closeErr.Reason)
		}
	case closeErr := <-connClosed:
		return fmt.Errorf("the broker closed the whole connection: %v", closeErr)
	case <-time.After(replyTimeout):
		return errors.New("the channel's NotifyClose did not report the refusal")
	case <-ctx.Done():
		return ctx.Err()
	}

	// A closed channel stays closed: every later call on it fails at once.
	// Code that ignores the refusal and keeps using the channel fails here,
	// far from the real cause.
	err = ch.ExchangeDeclarePassive(
		name,    // name
		"topic", // type
		true,    // durable
		false,   // auto-delete
		false,   // internal
		false,   // no-wait
		nil,     // args
	)
	if !errors.Is(err, amqp.ErrClosed) {
		return fmt.Errorf("using the closed channel: want %v, got %v", amqp.ErrClosed, err)
	}
	fmt.Fprintf(out, "the closed channel refuses every further call: %v\n", err)

	// Carry on: a closed channel is gone for good, so open a new one on the
	// same connection. Nothing else is lost.
	ch, err = conn.Channel()
	if err != nil {
		return fmt.Errorf("opening a new channel after the refusal: %w", err)
	}
	fmt.Fprintf(out, "opened a new channel on the same connection (local port %d)\n", localPort(conn))

	// Ask what exists. A passive declare only checks that an exchange of
	// this name exists; it creates nothing and, as the second call shows,
	// does not compare the type or the flags.
	err = ch.ExchangeDeclarePassive(
		name,    // name
		"topic", // type: not checked by a passive declare
		true,    // durable: not checked
		false,   // auto-delete: not checked
		false,   // internal: not checked
		false,   // no-wait
		nil,     // args
	)
	if err != nil {
		return fmt.Errorf("checking that exchange %q exists: %w", name, err)
	}
	fmt.Fprintf(out, "passive declare %q: it exists\n", name)
	err = ch.ExchangeDeclarePassive(
		name,     // name
		"direct", // type: wrong on purpose, and still accepted
		false,    // durable: wrong on purpose
		false,    // auto-delete
		false,    // internal
		false,    // no-wait
		nil,      // args
	)
	if err != nil {
		return fmt.Errorf("passive declare of %q as direct: %w", name, err)
	}
	fmt.Fprintf(out, "passive declare %q as direct and not durable: ok too, passive checks the name only\n", name)

	// To check the type and flags, declare actively with the full
	// description: ok means the exchange is exactly that.
	if err := declareExchange(ch, name); err != nil {
		return explainDeclareError(name, err)
	}
	fmt.Fprintf(out, "declared %q as a durable topic exchange on the new channel: ok, so that is what it still is\n", name)

	// A passive declare of a name that does not exist fails with 404
	// NOT_FOUND, and that too closes the channel.
	err = ch.ExchangeDeclarePassive(
		missing, // name
		"topic", // type
		true,    // durable
		false,   // auto-delete
		false,   // internal
		false,   // no-wait
		nil,     // args
	)
	if !errors.As(err, &refusal) || refusal.Code != amqp.NotFound {
		return fmt.Errorf("passive declare of the missing exchange %q: want 404 NOT_FOUND, got %v", missing, err)
	}
	fmt.Fprintf(out, "passive declare %q: code %d: %s; channel closed: %t\n", missing, refusal.Code, refusal.Reason, ch.IsClosed())

	// Clean up, on a channel of its own (the last one was closed by the
	// 404). if-unused: the broker deletes the exchange only when no queue
	// is bound to it, so a run pointed at an exchange in use never takes
	// it away from its consumers.
	switch {
	case *keep:
		fmt.Fprintf(out, "kept exchange %q (-keep): a run without -keep deletes it\n", name)
	default:
		deleted = true
		inUse, err := deleteExchange(conn, name)
		switch {
		case err != nil:
			return err
		case inUse:
			fmt.Fprintf(out, "kept exchange %q: queues are bound to it, so the if-unused delete was refused\n", name)
		default:
			fmt.Fprintf(out, "deleted exchange %q (if-unused: no queue was bound to it)\n", name)
		}
	}

	// The connection came through both refusals.
	if err := conn.Close(); err != nil {
		return fmt.Errorf("closing the connection: %w", err)
	}
	fmt.Fprintln(out, "closed the connection: it outlived both closed channels")
	return nil
}

// localPort returns the client-side TCP port of the connection: the same
// port means the same TCP connection.
func localPort(conn *amqp.Connection) int {
	if addr, ok := conn.LocalAddr().(*net.TCPAddr); ok {
		return addr.Port
	}
	return 0
}

// deleteExchange deletes the exchange on a channel of its own, if no queue
// is bound to it. inUse reports that the broker refused because queues are
// bound (406, which closes that channel); deleting an exchange that does
// not exist succeeds.
func deleteExchange(conn *amqp.Connection, name string) (inUse bool, err error) {
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("opening a channel to delete exchange %q: %w", name, err)
	}
	defer ch.Close()
	err = ch.ExchangeDelete(name,
		true,  // if-unused: only if no queue is bound to it
		false, // no-wait
	)
	var amqpErr *amqp.Error
	if errors.As(err, &amqpErr) && amqpErr.Code == amqp.PreconditionFailed {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("deleting exchange %q: %w", name, err)
	}
	return false, nil
}

// errInequivalent is what declareExchange wraps when the broker refuses a
// declaration because an exchange of that name exists with other
// arguments (406 PRECONDITION_FAILED).
var errInequivalent = errors.New("an exchange of that name already exists with other arguments")

// explainDeclareError adds to a failed declaration what to do about it.
func explainDeclareError(name string, err error) error {
	var amqpErr *amqp.Error
	switch {
	case errors.Is(err, errInequivalent):
		return fmt.Errorf("%w; pick another name with -exchange, or delete the old one in the management UI if nothing uses it", err)
	case errors.As(err, &amqpErr) && amqpErr.Code == amqp.AccessRefused:
		return fmt.Errorf("%w; the user may not configure exchange %q: grant configure permission with rabbitmqctl set_permissions", err, name)
	}
	return err
}
