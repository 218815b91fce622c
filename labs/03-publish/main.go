// Command 03-publish shows how a publisher learns that RabbitMQ really has
// its event: publisher confirms one message at a time, then a window of
// outstanding confirms, then the mandatory flag that hands back a message no
// queue wanted; and it measures what each way of publishing costs.
//
// It publishes contracts.EventCreated as JSON to a durable topic exchange
// declared like "events" in lab 02 (routing key and x-event-name header =
// the event name, content type application/json, persistent delivery, a
// message ID), into a queue bound for every event name. For each mode it prints three different
// things: sent (Publish returned nil), confirmed (the broker acked) and
// routed (the message is in the queue). It ends with the rate of each mode,
// measured in the same run against the same broker, including the original
// chapter's channel per message without confirms.
//
// Usage:
//
//	go run ./labs/03-publish [-url amqp://guest:guest@127.0.0.1:5672/] [-exchange lab03.events] [-queue lab03.publish] [-n 1000] [-window 100] [-keep]
//
// The exchange is the lab's own, lab03.events, not the capstone's "events":
// the capstone's BookingService binds a durable queue to "events", and would
// receive the lab's thousands of made-up events as real ones. The queue and
// the exchange are deleted at the end, also on Ctrl-C, unless -keep is
// given; the exchange only if no other queue is bound to it (if-unused).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/contracts"
	"example.com/myevents/labs/labkit"
)

// defaultURL is the local development broker.
const defaultURL = "amqp://guest:guest@127.0.0.1:5672/"

// typoKey is a routing key no queue is bound for: event.created with its
// last letter missing, the kind of mistake the mandatory flag catches.
const typoKey = "event.create"

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
	fs := flag.NewFlagSet("03-publish", flag.ContinueOnError)
	amqpURL := fs.String("url", "", "AMQP URL of the broker (default $AMQP_URL, else "+defaultURL+")")
	exchange := fs.String("exchange", "lab03.events", "name of the durable topic exchange to publish to (deleted at the end unless -keep, and only if no other queue is bound to it)")
	queue := fs.String("queue", "lab03.publish", "name of the queue that counts what was routed (deleted at the end unless -keep)")
	n := fs.Int("n", 1000, "messages to publish in each mode")
	window := fs.Int("window", 100, "how many confirms may be outstanding in the window mode")
	keep := fs.Bool("keep", false, "keep the queue and the exchange at the end instead of deleting them")
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
	if *n < 1 || *window < 1 {
		return fmt.Errorf("-n and -window must be at least 1, got %d and %d", *n, *window)
	}
	// Check the names before dialing (labkit.CheckNames says why).
	if err := labkit.CheckNames(*exchange, *queue, "lab03.events"); err != nil {
		return err
	}

	// Connect, and open the channel this program publishes on.
	conn, err := labkit.DialAMQPContext(ctx, *amqpURL, "myevents-03-publish")
	if err != nil {
		return err
	}
	defer conn.Close()
	fmt.Fprintf(out, "connected to RabbitMQ at %s\n", labkit.Redact(*amqpURL))
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("opening a channel: %w", err)
	}
	defer ch.Close()

	// Declare the exchange, a durable topic exchange like "events", which
	// every MyEvents service publishes to. Declaring is idempotent: it
	// creates the exchange or checks that it matches.
	if err := ch.ExchangeDeclare(*exchange, amqp.ExchangeTopic,
		true,  // durable: the exchange survives a broker restart
		false, // auto-delete
		false, // internal
		false, // no-wait
		nil,   // args
	); err != nil {
		return fmt.Errorf("declaring exchange %s: %w", *exchange, err)
	}

	// Whatever happens below, delete the queue and the exchange when we
	// leave, unless -keep.
	deleted := *keep
	defer func() {
		if !deleted {
			_, _ = deleteTopology(conn, *queue, *exchange)
		}
	}()

	// Declare a queue bound for every event name, so that what we publish is
	// routed somewhere and can be counted. It is durable on purpose: a
	// persistent message in a durable queue is written to disk before the
	// broker confirms it, which is the cost we want to measure.
	if _, err := ch.QueueDeclare(*queue,
		true,  // durable
		false, // auto-delete
		false, // exclusive
		false, // no-wait
		nil,   // args
	); err != nil {
		return fmt.Errorf("declaring queue %s: %w", *queue, err)
	}
	for _, name := range contracts.Names() {
		if err := ch.QueueBind(*queue, name, *exchange, false /* no-wait */, nil /* args */); err != nil {
			return fmt.Errorf("binding queue %s to %s for %s: %w", *queue, *exchange, name, err)
		}
	}
	// A run that crashed may have left messages behind: start empty.
	if _, err := ch.QueuePurge(*queue, false /* no-wait */); err != nil {
		return fmt.Errorf("purging queue %s: %w", *queue, err)
	}
	fmt.Fprintf(out, "exchange %q (topic, durable); queue %q bound for %s\n",
		*exchange, *queue, strings.Join(contracts.Names(), ", "))

	// Put the channel in confirm mode: from now on the broker acks (or, if
	// it cannot take a message, nacks) every message published on it.
	if err := ch.Confirm(false /* no-wait */); err != nil {
		return fmt.Errorf("enabling publisher confirms: %w", err)
	}

	// 1. Publish one message, wait for its confirm, then publish the next.
	fmt.Fprintln(out)
	fmt.Fprintln(out, "confirm each: publish one event.created, wait for its confirm, then the next")
	each, err := publishConfirmEach(ctx, ch, *exchange, *n)
	if err != nil {
		return err
	}
	if err := report(ctx, out, ch, *queue, each); err != nil {
		return err
	}

	// 2. Keep up to -window publishes unconfirmed at once.
	fmt.Fprintln(out)
	fmt.Fprintf(out, "confirm window: up to %d publishes unconfirmed; when full, wait for the oldest\n", *window)
	windowed, err := publishWindow(ctx, ch, *exchange, *n, *window)
	if err != nil {
		return err
	}
	if err := report(ctx, out, ch, *queue, windowed); err != nil {
		return err
	}

	// 3. The pitfall: a fresh channel per message and no confirm at all.
	fmt.Fprintln(out)
	fmt.Fprintln(out, "pitfall, channel per message: open a channel, publish, close it; no confirm")
	perChannel, err := publishChannelPerMessage(ctx, conn, *exchange, *n)
	if err != nil {
		return err
	}
	if err := report(ctx, out, ch, *queue, perChannel); err != nil {
		return err
	}

	// 4. Publish with a routing key nobody bound, and ask for it back.
	fmt.Fprintln(out)
	fmt.Fprintf(out, "mandatory: publish one event.created with routing key %q (a typo nobody bound)\n", typoKey)
	if err := publishUnroutable(ctx, out, conn, ch, *exchange, *queue); err != nil {
		return err
	}

	// Compare the rates, all measured in this run on this broker.
	fmt.Fprintln(out)
	fmt.Fprintf(out, "rates, %d messages per mode:\n", *n)
	fmt.Fprintf(out, "  confirm each: %.0f msg/s\n", each.rate())
	fmt.Fprintf(out, "  confirm window of %d: %.0f msg/s\n", *window, windowed.rate())
	fmt.Fprintf(out, "  channel per message, no confirm: %.0f msg/s\n", perChannel.rate())
	fmt.Fprintf(out, "  the window is %.1f times as fast as confirm each\n", windowed.rate()/each.rate())

	// Delete the queue, then the exchange, unless -keep.
	fmt.Fprintln(out)
	if *keep {
		fmt.Fprintf(out, "kept queue %q and exchange %q (-keep): a run without -keep deletes them\n", *queue, *exchange)
		return nil
	}
	deleted = true
	inUse, err := deleteTopology(conn, *queue, *exchange)
	switch {
	case err != nil:
		return err
	case inUse:
		fmt.Fprintf(out, "deleted queue %q; kept exchange %q: queues are bound to it, so the if-unused delete was refused\n", *queue, *exchange)
	default:
		fmt.Fprintf(out, "deleted queue %q and exchange %q\n", *queue, *exchange)
	}
	return nil
}

// tally is what one publishing mode achieved.
type tally struct {
	sent      int  // Publish returned nil: the bytes left this process
	confirmed int  // the broker acked: it has taken responsibility
	nacked    int  // the broker nacked: it could not take the message
	confirms  bool // false when the mode never asked for confirms
	elapsed   time.Duration
}

// rate returns the messages sent per second.
func (t tally) rate() float64 {
	if t.elapsed <= 0 {
		return 0
	}
	return float64(t.sent) / t.elapsed.Seconds()
}

// publishConfirmEach publishes n messages, waiting for each one's confirm
// before it publishes the next. Nothing is ever in doubt for long, but every
// message costs a full round trip plus the broker's disk write.
func publishConfirmEach(ctx context.Context, ch *amqp.Channel, exchange string, n int) (tally, error) {
	t := tally{confirms: true}
	start := time.Now()
	for i := 1; i <= n; i++ {
		msg, err := eventMessage("each", i)
		if err != nil {
			return t, err
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, contracts.EventCreatedName,
			false, // mandatory: the queue is bound, see step 4 for the flag
			false, // immediate: RabbitMQ does not support it
			msg)
		if err != nil {
			return t, fmt.Errorf("publishing %s: %w", msg.MessageId, err)
		}
		t.sent++
		// Wait for this message's confirm before the next publish.
		acked, err := dc.WaitContext(ctx)
		if err != nil {
			return t, fmt.Errorf("waiting for the confirm of %s: %w", msg.MessageId, err)
		}
		if acked {
			t.confirmed++
		} else {
			t.nacked++ // a real publisher publishes it again
		}
	}
	t.elapsed = time.Since(start)
	return t, nil
}

// publishWindow publishes n messages while keeping at most window of them
// unconfirmed. The broker confirms many at once (one ack with multiple=true),
// so round trips overlap. The price: when the connection drops, up to window
// messages are in doubt and must be published again, so consumers may see
// duplicates; and the publisher must keep them until they are confirmed.
func publishWindow(ctx context.Context, ch *amqp.Channel, exchange string, n, window int) (tally, error) {
	t := tally{confirms: true}
	pending := make([]*amqp.DeferredConfirmation, 0, window) // oldest first
	ids := make([]string, 0, window)
	settleOldest := func() error {
		acked, err := pending[0].WaitContext(ctx)
		if err != nil {
			return fmt.Errorf("waiting for the confirm of %s: %w", ids[0], err)
		}
		if acked {
			t.confirmed++
		} else {
			t.nacked++ // a real publisher publishes it again
		}
		pending, ids = pending[1:], ids[1:]
		return nil
	}
	start := time.Now()
	for i := 1; i <= n; i++ {
		// The window is full: wait for the oldest confirm before publishing more.
		if len(pending) == window {
			if err := settleOldest(); err != nil {
				return t, err
			}
		}
		msg, err := eventMessage("window", i)
		if err != nil {
			return t, err
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, contracts.EventCreatedName,
			false, // mandatory
			false, // immediate
			msg)
		if err != nil {
			return t, fmt.Errorf("publishing %s: %w", msg.MessageId, err)
		}
		t.sent++
		pending, ids = append(pending, dc), append(ids, msg.MessageId)
	}
	// Wait for the confirms still outstanding.
	for len(pending) > 0 {
		if err := settleOldest(); err != nil {
			return t, err
		}
	}
	t.elapsed = time.Since(start)
	return t, nil
}

// publishChannelPerMessage is the original chapter's emitter: it opens a
// channel for every message (channels must not be shared between
// goroutines, and this is the simplest way to never share one), publishes
// without confirms and closes the channel. Opening and closing are round
// trips, so it is as slow as confirming each message, and it still does not
// know whether the broker kept anything.
func publishChannelPerMessage(ctx context.Context, conn *amqp.Connection, exchange string, n int) (tally, error) {
	var t tally
	start := time.Now()
	for i := 1; i <= n; i++ {
		msg, err := eventMessage("channel", i)
		if err != nil {
			return t, err
		}
		ch, err := conn.Channel()
		if err != nil {
			return t, fmt.Errorf("opening a channel for %s: %w", msg.MessageId, err)
		}
		err = ch.PublishWithContext(ctx, exchange, contracts.EventCreatedName,
			false, // mandatory
			false, // immediate
			msg)
		if closeErr := ch.Close(); err == nil && closeErr != nil {
			err = closeErr
		}
		if err != nil {
			return t, fmt.Errorf("publishing %s: %w", msg.MessageId, err)
		}
		t.sent++ // and that is all this mode can say
	}
	t.elapsed = time.Since(start)
	return t, nil
}

// publishUnroutable publishes one message with the mandatory flag and a
// routing key no queue is bound for, and prints what came back. The
// publishing is publishMandatory, this lab's exercise (solution.go; the
// template is exercise.go).
func publishUnroutable(ctx context.Context, out io.Writer, conn *amqp.Connection, ch *amqp.Channel, exchange, queue string) error {
	msg, err := eventMessage("unroutable", 1)
	if err != nil {
		return err
	}
	fates, err := publishMandatory(ctx, conn, exchange, []outgoing{{key: typoKey, msg: msg}})
	if err != nil {
		return err
	}
	if len(fates) != 1 {
		return fmt.Errorf("publishMandatory reported %d fates for 1 message", len(fates))
	}
	returned, reason, confirmed := 0, "", 0
	if fates[0].returned {
		returned, reason = 1, " ("+fates[0].reason+")"
	}
	if fates[0].acked {
		confirmed = 1
	}
	routed, err := countRouted(ctx, ch, queue, 0)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  sent 1, returned %d%s, confirmed %d, routed to the queue %d\n", returned, reason, confirmed, routed)
	switch {
	case returned == 1 && confirmed == 1:
		fmt.Fprintln(out, "  the broker returned it and then acked it: confirmed alone does not mean routed")
	case confirmed == 1 && routed == 0:
		fmt.Fprintln(out, "  no return, yet an ack and no queue has it: without mandatory the broker dropped it without a word")
	}
	return nil
}

// outgoing is one message to publish, with its routing key.
type outgoing struct {
	key string
	msg amqp.Publishing
}

// fate is what the broker did with one message published with the
// mandatory flag.
type fate struct {
	id       string // the message ID
	acked    bool   // the broker confirmed it: it has taken responsibility
	returned bool   // the broker handed it back: no queue was bound for its key
	reason   string // why it was returned, such as "312 NO_ROUTE"; empty if it was not
}

// report prints what a mode sent, what the broker confirmed and what
// reached the queue, then empties the queue for the next mode.
func report(ctx context.Context, out io.Writer, ch *amqp.Channel, queue string, t tally) error {
	routed, err := countRouted(ctx, ch, queue, t.sent)
	if err != nil {
		return err
	}
	confirmed := "unknown (no confirms)"
	if t.confirms {
		confirmed = fmt.Sprintf("%d, nacked %d", t.confirmed, t.nacked)
	}
	fmt.Fprintf(out, "  sent %d, confirmed %s, routed to the queue %d\n", t.sent, confirmed, routed)
	return nil
}

// countRouted waits until the queue holds want messages, or two seconds
// pass, then purges it and returns how many it held. Confirmed messages are
// already there; unconfirmed ones may still be on their way, or lost.
func countRouted(ctx context.Context, ch *amqp.Channel, queue string, want int) (int, error) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		q, err := ch.QueueDeclarePassive(queue,
			true,  // durable
			false, // auto-delete
			false, // exclusive
			false, // no-wait
			nil,   // args
		)
		if err != nil {
			return 0, fmt.Errorf("counting the messages in queue %s: %w", queue, err)
		}
		if q.Messages >= want || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	purged, err := ch.QueuePurge(queue, false /* no-wait */)
	if err != nil {
		return 0, fmt.Errorf("purging queue %s: %w", queue, err)
	}
	return purged, nil
}

// eventMessage builds the AMQP message for the i-th event of a mode. The
// message ID names the mode and the number, so a consumer can tell every
// message apart and spot a duplicate.
func eventMessage(mode string, i int) (amqp.Publishing, error) {
	start := time.Date(2026, 11, 27, 20, 0, 0, 0, time.UTC)
	ev := contracts.EventCreated{
		ID:         fmt.Sprintf("ev-%s-%05d", mode, i),
		Name:       fmt.Sprintf("Concert %d", i),
		LocationID: "loc-1",
		Hall:       "Main",
		Capacity:   500,
		StartDate:  start,
		EndDate:    start.Add(3 * time.Hour),
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return amqp.Publishing{}, fmt.Errorf("encoding %s: %w", ev.EventName(), err)
	}
	return amqp.Publishing{
		Headers:      amqp.Table{"x-event-name": ev.EventName()},
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent, // a durable queue writes it to disk
		MessageId:    messageID(mode, i),
		Timestamp:    time.Now(),
		Body:         body,
	}, nil
}

// messageID is the ID of the i-th message of a mode, such as "each-00001".
func messageID(mode string, i int) string {
	return fmt.Sprintf("%s-%05d", mode, i)
}

// deleteTopology removes the lab's queue, then its exchange, on a channel
// of its own, so that it works even when the publishing channel was closed
// by an error. The exchange goes only if no queue is bound to it any more
// (if-unused): inUse reports that the broker refused for that reason.
func deleteTopology(conn *amqp.Connection, queue, exchange string) (inUse bool, err error) {
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("opening a channel to delete queue %s: %w", queue, err)
	}
	defer ch.Close()
	if _, err := ch.QueueDelete(queue,
		false, // if-unused
		false, // if-empty
		false, // no-wait
	); err != nil {
		return false, fmt.Errorf("deleting queue %s: %w", queue, err)
	}
	err = ch.ExchangeDelete(exchange,
		true,  // if-unused: only if no queue is bound to it
		false, // no-wait
	)
	var amqpErr *amqp.Error
	if errors.As(err, &amqpErr) && amqpErr.Code == amqp.PreconditionFailed {
		return true, nil // the refusal closed ch; the deferred Close is harmless
	}
	if err != nil {
		return false, fmt.Errorf("deleting exchange %s: %w", exchange, err)
	}
	return false, nil
}
