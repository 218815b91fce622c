// Command 07-request-reply shows request and reply over AMQP, the pattern
// publish/subscribe is contrasted with, with its costs: BookingService asks
// EventService "how many seats does event X have?" and waits for the answer.
//
// EventService consumes a request queue and answers each question on the
// queue the request's reply_to names, copying its correlation_id. The
// program walks through six steps: a reply queue of the caller's own with
// three questions in flight and the replies out of order; a timeout, and
// the late reply that then arrives for nobody; a caller that gives up and
// goes away, whose reply comes back unroutable; direct reply-to
// (amq.rabbitmq.reply-to), its rules and its caller going away; EventService
// down, where a request expires while an event waits in its subscriber's
// queue; and what a call costs, measured in the same run.
//
// Usage:
//
//	go run ./labs/07-request-reply [-url amqp://guest:guest@127.0.0.1:5672/] [-queue lab07.seats] [-events lab07.bookingservice] [-n 200] [-keep]
//
// Everything goes through the default exchange, straight to a queue by its
// name (lab 06 shows the exchange types). The program deletes its two
// queues at the end; with -keep they stay for five minutes of disuse. The
// reply queues are exclusive: they go with their connections in any case.
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
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/contracts"
	"example.com/myevents/labs/labkit"
)

// defaultURL is the local development broker.
const defaultURL = "amqp://guest:guest@127.0.0.1:5672/"

// directReplyTo is RabbitMQ's pseudo-queue for direct reply-to.
const directReplyTo = "amq.rabbitmq.reply-to"

// queueTTL is how long an unused queue lives (x-expires), so that queues
// kept with -keep, or left behind by a crash, clean themselves up.
const queueTTL = 5 * time.Minute

// waitTimeout bounds every wait for something the broker or EventService
// should do, so the program never hangs on a broker that does not do it.
const waitTimeout = 5 * time.Second

// How long BookingService waits for an answer: patient in steps 1 and 6,
// impatient in steps 2 to 4, and in step 5 long enough to see the request
// expire.
const (
	patience    = waitTimeout
	impatience  = 100 * time.Millisecond
	downTimeout = 300 * time.Millisecond
)

// Steps at which the program calls its probe, with the name of the queue
// (or reply-to address) the step is about. Tests use them to look at the
// broker at exactly that moment.
const (
	stepReplyQueueUp   = "BookingService consumes its reply queue"
	stepInstanceGone   = "the second BookingService and its reply queue are gone"
	stepDirectPresent  = "the direct reply-to caller is present"
	stepDirectGone     = "the direct reply-to caller is gone"
	stepServerDown     = "the request expired while EventService was down"
	stepSubscriberDown = "an event waits while BookingService is down"
)

// probe is told about each step as it happens.
type probe func(step, name string)

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
	return runProbed(ctx, args, out, func(string, string) {})
}

// runProbed is run with a probe; tests call it to watch the broker.
func runProbed(ctx context.Context, args []string, out io.Writer, observe probe) error {
	fs := flag.NewFlagSet("07-request-reply", flag.ContinueOnError)
	amqpURL := fs.String("url", "", "AMQP URL of the broker (default $AMQP_URL, else "+defaultURL+")")
	queue := fs.String("queue", "lab07.seats", "EventService's request queue")
	events := fs.String("events", "lab07.bookingservice", "BookingService's event queue, for the publish/subscribe contrast of step 5")
	n := fs.Int("n", 200, "calls to time in each mode of step 6")
	keep := fs.Bool("keep", false, "keep the two queues at the end instead of deleting them (they expire after five minutes unused)")
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
	if *n < 20 {
		return fmt.Errorf("-n must be at least 20, got %d", *n)
	}
	*n -= *n % 20 // step 6 asks 20 at a time too
	switch {
	case *queue == "" || *events == "":
		return errors.New("-queue and -events must name queues: with an empty name the broker invents one")
	case *queue == *events:
		return fmt.Errorf("-queue and -events must be two queues, both are %q", *queue)
	}

	// Connect twice: one connection is EventService's, the other
	// BookingService's, as if they were two processes.
	conn, err := labkit.DialAMQPContext(ctx, *amqpURL, "myevents-07-request-reply eventservice")
	if err != nil {
		return err
	}
	defer conn.Close()
	bconn, err := labkit.DialAMQPContext(ctx, *amqpURL, "myevents-07-request-reply bookingservice")
	if err != nil {
		return err
	}
	defer bconn.Close()
	fmt.Fprintf(out, "connected to RabbitMQ at %s\n", labkit.Redact(*amqpURL))
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("opening a channel: %w", err)
	}
	defer ch.Close()

	// Declare EventService's request queue. It is the server's queue: the
	// server declares it, callers only publish to it by name. Requests are
	// worth nothing after their caller's deadline, so neither the queue
	// nor its messages need to survive a broker restart.
	if _, err := ch.QueueDeclare(*queue,
		false, // durable
		false, // auto-delete
		false, // exclusive: callers and server use it from other connections
		false, // no-wait
		amqp.Table{"x-expires": queueTTL.Milliseconds()},
	); err != nil {
		return fmt.Errorf("declaring queue %s: %w", *queue, err)
	}
	// Whatever happens below, delete what we declared when we leave.
	deleted := false
	defer func() {
		if !deleted && !*keep {
			_ = deleteQueues(conn, *queue, *events)
		}
	}()
	// BookingService's own durable queue, for step 5: events must survive.
	if _, err := ch.QueueDeclare(*events,
		true,  // durable
		false, // auto-delete
		false, // exclusive
		false, // no-wait
		amqp.Table{"x-expires": queueTTL.Milliseconds()},
	); err != nil {
		return fmt.Errorf("declaring queue %s: %w", *events, err)
	}
	// An earlier -keep run (or a crash) may have left messages: start empty.
	for _, q := range []string{*queue, *events} {
		if _, err := ch.QueuePurge(q, false /* no-wait */); err != nil {
			return fmt.Errorf("purging queue %s: %w", q, err)
		}
	}
	fmt.Fprintf(out, "EventService answers \"how many seats does event X have?\" on queue %q\n", *queue)

	// Start EventService, and BookingService's caller with a reply queue
	// of its own. Every question gets a fresh correlation id from ids.
	srv := newServer(conn, *queue)
	if err := srv.start(ctx); err != nil {
		return err
	}
	defer srv.stop()
	ids := sequence("req")
	booking, err := newClient(bconn, *queue, ids)
	if err != nil {
		return err
	}
	defer booking.close()

	fmt.Fprintln(out)
	fmt.Fprintln(out, "1. a reply queue of BookingService's own; replies matched by correlation id")
	if err := stepReplyQueue(ctx, out, observe, booking, srv); err != nil {
		return err
	}

	fmt.Fprintln(out)
	fmt.Fprintf(out, "2. a timeout: BookingService waits %v; EventService needs %v for ev-4\n", impatience, catalogue["ev-4"].work)
	if err := stepTimeout(ctx, out, booking, srv); err != nil {
		return err
	}

	fmt.Fprintln(out)
	fmt.Fprintln(out, "3. a caller that gives up and goes away before the reply")
	if err := stepCallerGone(ctx, out, observe, *amqpURL, conn, *queue, ids, srv); err != nil {
		return err
	}

	fmt.Fprintln(out)
	fmt.Fprintf(out, "4. direct reply-to: no reply queue; replies go to the consumer of %s\n", directReplyTo)
	if err := stepDirect(ctx, out, observe, bconn, *queue, ids, srv); err != nil {
		return err
	}

	fmt.Fprintln(out)
	fmt.Fprintf(out, "5. EventService is down: nobody consumes %q\n", *queue)
	copyOf, err := stepDown(ctx, out, observe, conn, ch, booking, srv, *queue, *events)
	if err != nil {
		return err
	}

	fmt.Fprintln(out)
	fmt.Fprintf(out, "6. what a question costs, measured here (%d each way)\n", *n)
	if err := stepCosts(ctx, out, bconn, *queue, ids, srv, booking, copyOf, *n); err != nil {
		return err
	}

	fmt.Fprintln(out)
	if *keep {
		fmt.Fprintf(out, "kept queues %q and %q (they expire after %v unused)\n", *queue, *events, queueTTL)
		return nil
	}
	srv.stop() // before deleting the queue it consumes
	deleted = true
	if err := deleteQueues(conn, *queue, *events); err != nil {
		return err
	}
	fmt.Fprintf(out, "deleted queues %q and %q\n", *queue, *events)
	return nil
}

// stepReplyQueue asks three questions at once on BookingService's reply
// queue. EventService answers them in the order its lookups finish, not in
// the order they were asked; the correlation id puts each reply with its
// question.
func stepReplyQueue(ctx context.Context, out io.Writer, observe probe, booking *client, srv *server) error {
	fmt.Fprintln(out, "  reply queue: named by the broker, exclusive, deleted with BookingService's connection")
	observe(stepReplyQueueUp, booking.replyTo)

	ctx1, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	// call is this lab's exercise (solution.go; the template is exercise.go).
	answers, err := booking.call(ctx1, "ev-1", "ev-2", "ev-3")
	if err != nil {
		return fmt.Errorf("asking for ev-1, ev-2 and ev-3: %w", err)
	}
	if len(answers) != 3 {
		return fmt.Errorf("call returned %d answers to 3 questions", len(answers))
	}
	fmt.Fprintf(out, "  asked %s, all three in flight at once\n", asked(answers))
	var ids, order []string
	for _, a := range answers {
		fmt.Fprintf(out, "  reply to %s: %s\n", a.id, a.describe())
		ids, order = append(ids, a.id), append(order, a.EventID)
	}
	if slices.Equal(order, []string{"ev-1", "ev-2", "ev-3"}) {
		fmt.Fprintln(out, "  the replies came in the order asked")
	} else {
		fmt.Fprintln(out, "  the replies came out of order; each found its question by its correlation id")
	}
	return srv.awaitAll(ctx, ids)
}

// stepTimeout asks about ev-4, which EventService needs longer for than
// BookingService waits. The caller gives up; EventService replies anyway,
// and the reply lands in the reply queue, where the next call finds it and
// ignores it: nobody waits for that correlation id any more.
func stepTimeout(ctx context.Context, out io.Writer, booking *client, srv *server) error {
	ctx2, cancel := context.WithTimeout(ctx, impatience)
	defer cancel()
	_, err := booking.call(ctx2, "ev-4")
	id := booking.lastID
	if err := expectTimeout(ctx, err); err != nil {
		return err
	}
	gaveUp := time.Now()
	fmt.Fprintf(out, "  %s (ev-4): no reply within %v: %v\n", id, impatience, context.DeadlineExceeded)

	// EventService finishes its lookup and replies to a caller who no
	// longer waits. The reply is routed: the reply queue still exists.
	late, err := srv.await(ctx, id)
	if err != nil {
		return err
	}
	if late.returned != "" {
		return fmt.Errorf("EventService's late reply to %s came back (%s), though the reply queue exists", id, late.returned)
	}
	fmt.Fprintf(out, "  EventService replied to %s anyway, %v after its caller gave up; the broker routed it to the reply queue\n", id, late.at.Sub(gaveUp).Round(time.Millisecond))

	// The next question finds the late reply first, in the same queue.
	ignoredBefore := len(booking.ignored)
	ctx3, cancel3 := context.WithTimeout(ctx, patience)
	defer cancel3()
	answers, err := booking.call(ctx3, "ev-2")
	if err != nil {
		return fmt.Errorf("asking for ev-2: %w", err)
	}
	if len(answers) != 1 {
		return fmt.Errorf("call returned %d answers to 1 question", len(answers))
	}
	ignored := "nothing"
	if extra := booking.ignored[ignoredBefore:]; len(extra) > 0 {
		ignored = "the reply to " + strings.Join(extra, ", ")
	}
	fmt.Fprintf(out, "  %s (ev-2): %s; on the way it ignored %s, which nobody waits for\n", answers[0].id, answers[0].describe(), ignored)
	return srv.awaitAll(ctx, []string{answers[0].id})
}

// stepCallerGone runs a second BookingService instance that asks about
// ev-4, gives up and shuts down. Its exclusive reply queue goes with its
// connection, so EventService's reply, published with the mandatory flag,
// is returned to EventService as unroutable.
func stepCallerGone(ctx context.Context, out io.Writer, observe probe, amqpURL string, conn *amqp.Connection, queue string, ids func() string, srv *server) error {
	conn2, err := labkit.DialAMQPContext(ctx, amqpURL, "myevents-07-request-reply bookingservice 2")
	if err != nil {
		return err
	}
	defer conn2.Close()
	second, err := newClient(conn2, queue, ids)
	if err != nil {
		return err
	}
	// EventService's lookup answers only once the caller is gone: the
	// story is the same on a machine that is slow to close a connection.
	release := srv.hold("ev-4")
	defer release()
	ctx2, cancel := context.WithTimeout(ctx, impatience)
	defer cancel()
	_, err = second.call(ctx2, "ev-4")
	id := second.lastID
	if err := expectTimeout(ctx, err); err != nil {
		return err
	}
	// Shut down: closing the connection deletes the exclusive reply queue.
	_ = conn2.Close()
	if err := waitGone(ctx, conn, second.replyTo); err != nil {
		return err
	}
	release()
	fmt.Fprintf(out, "  a second BookingService asked %s (ev-4), gave up after %v and shut down: its reply queue is gone\n", id, impatience)
	observe(stepInstanceGone, second.replyTo)

	r, err := srv.await(ctx, id)
	if err != nil {
		return err
	}
	if r.returned == "" {
		return fmt.Errorf("EventService heard nothing back about its reply to %s, though the reply queue is gone: was it published with mandatory?", id)
	}
	fmt.Fprintf(out, "  EventService's reply to %s, published with mandatory, came back: %s\n", id, r.returned)
	fmt.Fprintln(out, "  without the mandatory flag the broker would have dropped it without a word")
	return nil
}

// stepDirect shows direct reply-to: its two rules (consume before
// publishing, on the same channel; auto-ack), a call through it, what the
// mandatory flag says about such a reply, and a caller that goes away.
func stepDirect(ctx context.Context, out io.Writer, observe probe, bconn *amqp.Connection, queue string, ids func() string, srv *server) error {
	// Rule 1, broken: a request naming amq.rabbitmq.reply-to, published on
	// a channel that does not consume it. The broker closes the channel
	// and routes nothing.
	bad, err := bconn.Channel()
	if err != nil {
		return fmt.Errorf("opening a channel: %w", err)
	}
	closed := bad.NotifyClose(make(chan *amqp.Error, 1))
	body, err := json.Marshal(question{EventID: "ev-2"})
	if err != nil {
		return fmt.Errorf("encoding a question: %w", err)
	}
	if err := bad.PublishWithContext(ctx, "", queue,
		false, // mandatory
		false, // immediate
		amqp.Publishing{ContentType: "application/json", ReplyTo: directReplyTo, CorrelationId: "no-consumer", Body: body},
	); err != nil {
		return fmt.Errorf("publishing without a reply consumer: %w", err)
	}
	select {
	case e := <-closed:
		fmt.Fprintf(out, "  pitfall, publish before consuming %s: the broker closed the channel: %s\n", directReplyTo, brokerSays(e))
	case <-time.After(waitTimeout):
		_ = bad.Close()
		return fmt.Errorf("the broker accepted a request for %s on a channel that does not consume it", directReplyTo)
	case <-ctx.Done():
		_ = bad.Close()
		return ctx.Err()
	}

	// Rule 2, broken: consuming the pseudo-queue with manual acks.
	bad, err = bconn.Channel()
	if err != nil {
		return fmt.Errorf("opening a channel: %w", err)
	}
	_, err = bad.Consume(directReplyTo, "",
		false, // auto-ack: off, which the broker refuses here
		false, // exclusive
		false, // no-local
		false, // no-wait
		nil,   // args
	)
	if err == nil {
		_ = bad.Close()
		return fmt.Errorf("the broker let a consumer of %s use manual acks", directReplyTo)
	}
	fmt.Fprintf(out, "  pitfall, consume %s with manual acks: %s\n", directReplyTo, brokerSays(err))

	// Done right: newDirectClient consumes with auto-ack first, and call
	// publishes on that same channel.
	direct, err := newDirectClient(bconn, queue, ids)
	if err != nil {
		return err
	}
	defer direct.close()
	fmt.Fprintf(out, "  BookingService consumes %s with auto-ack, then publishes on the same channel\n", directReplyTo)
	ctx2, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	answers, err := direct.call(ctx2, "ev-3")
	if err != nil {
		return fmt.Errorf("asking for ev-3 with direct reply-to: %w", err)
	}
	if len(answers) != 1 {
		return fmt.Errorf("call returned %d answers to 1 question", len(answers))
	}
	fmt.Fprintf(out, "  %s (ev-3): %s\n", answers[0].id, answers[0].describe())
	r, err := srv.await(ctx, answers[0].id)
	if err != nil {
		return err
	}
	token, _ := strings.CutPrefix(r.replyTo, directReplyTo+".")
	fmt.Fprintf(out, "  the broker rewrote reply_to: EventService saw %s.<token>, %d characters that lead back to this channel\n", directReplyTo, len(token))
	fmt.Fprintf(out, "  after its lookup it declared that name passively: %s, the caller is there\n", r.checked)
	observe(stepDirectPresent, r.replyTo)
	if r.returned != "" {
		fmt.Fprintf(out, "  the reply reached BookingService, and yet it came back to EventService: %s\n", r.returned)
	} else {
		fmt.Fprintln(out, "  the reply reached BookingService, and the broker did not return it")
	}

	// A caller that gives up and goes away: its channel closes, and with
	// it the only place the reply could go.
	release := srv.hold("ev-4") // answered only once the channel is closed
	defer release()
	ctx3, cancel3 := context.WithTimeout(ctx, impatience)
	defer cancel3()
	_, err = direct.call(ctx3, "ev-4")
	id := direct.lastID
	if err := expectTimeout(ctx, err); err != nil {
		return err
	}
	direct.close()
	release()
	fmt.Fprintf(out, "  BookingService asked %s (ev-4), gave up after %v and closed its channel\n", id, impatience)
	r, err = srv.await(ctx, id)
	if err != nil {
		return err
	}
	if !r.callerGone {
		return fmt.Errorf("EventService found the caller of %s still there (%d consumers) after its channel closed", id, r.consumers)
	}
	fmt.Fprintf(out, "  after its lookup EventService declared the reply_to passively: %s; it sent no reply\n", r.checked)
	observe(stepDirectGone, r.replyTo)
	return nil
}

// stepDown stops EventService. A question then waits in the request queue
// until its expiration drops it; nobody answers, late or ever. An event
// published for BookingService while it is down, on the other hand, waits
// in BookingService's queue until it comes back, and is then as good as
// new. It returns BookingService's copy of what it heard.
func stepDown(ctx context.Context, out io.Writer, observe probe, conn *amqp.Connection, ch *amqp.Channel, booking *client, srv *server, queue, events string) (map[string]int, error) {
	srv.stop()
	ctx2, cancel := context.WithTimeout(ctx, downTimeout)
	defer cancel()
	_, err := booking.call(ctx2, "ev-1")
	id := booking.lastID
	if err := expectTimeout(ctx, err); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "  %s (ev-1): no reply within %v: %v\n", id, downTimeout, context.DeadlineExceeded)
	// The question carried the caller's deadline as its expiration.
	left, err := waitCount(ctx, ch, queue, 0)
	if err != nil {
		return nil, err
	}
	if left != 0 {
		return nil, fmt.Errorf("%s still waits in queue %s %v after its caller gave up: without an expiration, EventService would answer it when it came back, to nobody", id, queue, waitTimeout)
	}
	fmt.Fprintf(out, "  the request expired in %q with its caller's deadline: %d waiting, nobody will answer it late\n", queue, left)
	observe(stepServerDown, queue)

	// Publish/subscribe instead: EventService announces a new event while
	// BookingService is not consuming.
	start := time.Date(2026, 11, 27, 20, 0, 0, 0, time.UTC)
	ev := contracts.EventCreated{ID: "ev-5", Name: "Concert 5", LocationID: "loc-1", Hall: "Main", Capacity: 2000, StartDate: start, EndDate: start.Add(3 * time.Hour)}
	if err := publishEvent(ctx, conn, events, ev); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "  publish/subscribe instead: %s for %s published while BookingService is down\n", ev.EventName(), ev.ID)
	waiting, err := waitCount(ctx, ch, events, 1)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "  it waits in BookingService's queue %q: %d waiting\n", events, waiting)
	observe(stepSubscriberDown, events)

	// BookingService comes back, consumes its queue and keeps its own copy.
	copyOf := map[string]int{}
	got, err := consumeOne(ctx, conn, events, func(e contracts.Event) {
		if created, ok := e.(*contracts.EventCreated); ok {
			copyOf[created.ID] = created.Capacity
		}
	})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "  BookingService came back and got it: %s; it books from its own copy (%d seats), asking nobody\n", got, copyOf[ev.ID])
	return copyOf, nil
}

// stepCosts measures what a question costs: one at a time on a reply
// queue, one at a time with direct reply-to, twenty in flight on a reply
// queue; and, for comparison, the lookup event collaboration does instead.
func stepCosts(ctx context.Context, out io.Writer, bconn *amqp.Connection, queue string, ids func() string, srv *server, booking *client, copyOf map[string]int, n int) error {
	if err := srv.start(ctx); err != nil {
		return err
	}
	direct, err := newDirectClient(bconn, queue, ids)
	if err != nil {
		return err
	}
	defer direct.close()
	for _, m := range []struct {
		name     string
		c        *client
		inFlight int
	}{
		{"one at a time, reply queue", booking, 1},
		{"one at a time, direct reply-to", direct, 1},
		{"20 in flight, reply queue", booking, 20},
	} {
		took, total, err := timeCalls(ctx, m.c, n, m.inFlight)
		if err != nil {
			return err
		}
		rate := float64(n) / total.Seconds()
		if m.inFlight == 1 {
			fmt.Fprintf(out, "  %s: median %.2f ms, 99th percentile %.2f ms, %.0f calls/s\n", m.name, ms(percentile(took, 50)), ms(percentile(took, 99)), rate)
		} else {
			fmt.Fprintf(out, "  %s: %.0f calls/s\n", m.name, rate)
		}
	}
	// Event collaboration: BookingService reads its own copy.
	sum, start := 0, time.Now()
	for range n {
		sum += copyOf["ev-5"]
	}
	elapsed := time.Since(start)
	if sum != n*copyOf["ev-5"] || sum == 0 {
		return errors.New("BookingService's copy does not hold ev-5")
	}
	fmt.Fprintf(out, "  BookingService's own copy instead: %.0f ns per lookup, no message, no EventService needed\n", float64(elapsed.Nanoseconds())/float64(n))
	return nil
}

// timeCalls makes n calls asking about ev-2 (no lookup time at
// EventService), inFlight questions per call, and returns how long each
// call took and the total.
func timeCalls(ctx context.Context, c *client, n, inFlight int) ([]time.Duration, time.Duration, error) {
	eventIDs := slices.Repeat([]string{"ev-2"}, inFlight)
	var took []time.Duration
	start := time.Now()
	for range n / inFlight {
		ctx2, cancel := context.WithTimeout(ctx, patience)
		t0 := time.Now()
		answers, err := c.call(ctx2, eventIDs...)
		cancel()
		if err != nil {
			return nil, 0, fmt.Errorf("timing calls: %w", err)
		}
		if len(answers) != inFlight {
			return nil, 0, fmt.Errorf("call returned %d answers to %d questions", len(answers), inFlight)
		}
		took = append(took, time.Since(t0))
	}
	return took, time.Since(start), nil
}

// percentile returns the p-th percentile of the durations (nearest rank).
func percentile(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p+99)/100 - 1
	return s[max(i, 0)]
}

// ms converts a duration to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// expectTimeout accepts the error of a call that was meant to time out:
// nil if it did. A call that succeeded, failed otherwise, or was
// interrupted (Ctrl-C) is reported.
func expectTimeout(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err == nil:
		return errors.New("the call was answered, though EventService should have been too slow")
	case !errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("a call meant to time out failed otherwise: %w", err)
	}
	return nil
}

// question is the body of a request: how many seats does this event have?
type question struct {
	EventID string `json:"event_id"`
}

// reply is the body of EventService's answer.
type reply struct {
	EventID string `json:"event_id"`
	Seats   int    `json:"seats,omitempty"`
	Error   string `json:"error,omitempty"` // such as "unknown event"
}

// answer is one reply, put with its question by the correlation id.
type answer struct {
	id string // the correlation id the question was sent with
	reply
}

// describe says what the answer says.
func (a answer) describe() string {
	if a.Error != "" {
		return a.EventID + ": " + a.Error
	}
	return fmt.Sprintf("%s has %d seats", a.EventID, a.Seats)
}

// asked lists the questions of answers in the order of their ids, such as
// "req-1 (ev-1), req-2 (ev-2)".
func asked(answers []answer) string {
	s := slices.Clone(answers)
	slices.SortFunc(s, func(a, b answer) int { return strings.Compare(a.id, b.id) })
	var parts []string
	for _, a := range s {
		parts = append(parts, fmt.Sprintf("%s (%s)", a.id, a.EventID))
	}
	return strings.Join(parts, ", ")
}

// client is BookingService's side of request/reply: a channel to publish
// questions on, and its own consumer of the replies. One call at a time:
// call reads the replies itself.
type client struct {
	ch      *amqp.Channel        // publishes the questions; with direct reply-to, also consumes the replies
	replies <-chan amqp.Delivery // the replies, from this client's own consumer
	replyTo string               // what the questions name as reply_to: the reply queue, or amq.rabbitmq.reply-to
	queue   string               // EventService's request queue
	nextID  func() string        // hands out a fresh correlation id
	lastID  string               // the correlation id handed out last
	ignored []string             // correlation ids of replies call ignored: nobody waited for them
}

// newClient opens a channel on conn, declares a reply queue of the
// caller's own and consumes it.
func newClient(conn *amqp.Connection, queue string, nextID func() string) (*client, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("opening the caller's channel: %w", err)
	}
	// The broker names the queue (amq.gen-...). Exclusive: no other
	// connection may use it, and it is deleted when this connection
	// closes, so a reply queue lives exactly as long as its caller.
	q, err := ch.QueueDeclare("",
		false, // durable
		true,  // auto-delete: also when its consumer is cancelled
		true,  // exclusive
		false, // no-wait
		nil,   // args
	)
	if err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("declaring a reply queue: %w", err)
	}
	// Auto-ack: a reply is worth nothing once its caller has gone, so
	// there is nothing to hand to anyone else.
	replies, err := ch.Consume(q.Name, "",
		true,  // auto-ack
		true,  // exclusive: the only consumer
		false, // no-local
		false, // no-wait
		nil,   // args
	)
	if err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("consuming reply queue %s: %w", q.Name, err)
	}
	c := &client{ch: ch, replies: replies, replyTo: q.Name, queue: queue}
	c.nextID = c.counting(nextID)
	return c, nil
}

// newDirectClient opens a channel on conn that consumes direct reply-to.
func newDirectClient(conn *amqp.Connection, queue string, nextID func() string) (*client, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("opening the caller's channel: %w", err)
	}
	// Consume the pseudo-queue before publishing any question that names
	// it, and publish the questions on this same channel: the broker
	// delivers the replies to the consumer of the channel the request
	// came from. Auto-ack is required: there is no queue a reply could go
	// back to.
	replies, err := ch.Consume(directReplyTo, "",
		true,  // auto-ack: required
		false, // exclusive
		false, // no-local
		false, // no-wait
		nil,   // args
	)
	if err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("consuming %s: %w", directReplyTo, err)
	}
	c := &client{ch: ch, replies: replies, replyTo: directReplyTo, queue: queue}
	c.nextID = c.counting(nextID)
	return c, nil
}

// counting wraps nextID so that the client remembers the last id it
// handed out (the program prints it for calls that time out).
func (c *client) counting(nextID func() string) func() string {
	return func() string {
		c.lastID = nextID()
		return c.lastID
	}
}

// close closes the client's channel: its consumer stops, and a reply queue
// declared auto-delete goes with it.
func (c *client) close() { _ = c.ch.Close() }

// sequence returns a function that hands out prefix-1, prefix-2, ...
// Correlation ids need only be unique among the replies one consumer can
// receive; a counter per process is enough for an exclusive reply queue.
func sequence(prefix string) func() string {
	var mu sync.Mutex
	n := 0
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		n++
		return fmt.Sprintf("%s-%d", prefix, n)
	}
}

// brokerSays turns a channel error into "406 PRECONDITION_FAILED - ...".
func brokerSays(err error) string {
	var amqpErr *amqp.Error
	if errors.As(err, &amqpErr) {
		return fmt.Sprintf("%d %s", amqpErr.Code, amqpErr.Reason)
	}
	return err.Error()
}

// waitGone waits until a queue no longer exists.
func waitGone(ctx context.Context, conn *amqp.Connection, queue string) error {
	deadline := time.Now().Add(waitTimeout)
	for {
		ch, err := conn.Channel()
		if err != nil {
			return fmt.Errorf("opening a channel: %w", err)
		}
		_, err = ch.QueueDeclarePassive(queue, false, true, true, false, nil)
		_ = ch.Close()
		var amqpErr *amqp.Error
		if errors.As(err, &amqpErr) && amqpErr.Code == amqp.NotFound {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("queue %s still exists %v after its connection closed", queue, waitTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// waitCount waits until the queue holds want ready messages (or
// waitTimeout passes) and returns how many it holds.
func waitCount(ctx context.Context, ch *amqp.Channel, queue string, want int) (int, error) {
	deadline := time.Now().Add(waitTimeout)
	for {
		q, err := ch.QueueDeclarePassive(queue,
			false, // durable (ignored by a passive declare)
			false, // auto-delete
			false, // exclusive
			false, // no-wait
			nil,   // args
		)
		if err != nil {
			return 0, fmt.Errorf("counting the messages in queue %s: %w", queue, err)
		}
		if q.Messages == want || time.Now().After(deadline) {
			return q.Messages, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for queue %s: %w", queue, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// consumeOne consumes one event from a queue with manual acks, hands it
// to apply, acks it after, and says what it was.
func consumeOne(ctx context.Context, conn *amqp.Connection, queue string, apply func(contracts.Event)) (string, error) {
	ch, err := conn.Channel()
	if err != nil {
		return "", fmt.Errorf("opening a consumer channel: %w", err)
	}
	defer ch.Close()
	deliveries, err := ch.Consume(queue, "",
		false, // auto-ack: off, ack after processing (lab 04)
		false, // exclusive
		false, // no-local
		false, // no-wait
		nil,   // args
	)
	if err != nil {
		return "", fmt.Errorf("consuming queue %s: %w", queue, err)
	}
	select {
	case d, ok := <-deliveries:
		if !ok {
			return "", fmt.Errorf("the consumer of queue %s stopped", queue)
		}
		name, _ := d.Headers["x-event-name"].(string)
		ev, err := contracts.Decode(name, d.Body)
		if err != nil {
			return "", fmt.Errorf("decoding a message of queue %s: %w", queue, err)
		}
		apply(ev)
		if err := d.Ack(false /* multiple */); err != nil {
			return "", fmt.Errorf("acking %s: %w", d.MessageId, err)
		}
		return ev.EventName() + " for " + ev.PartitionKey(), nil
	case <-ctx.Done():
		return "", ctx.Err()
	case <-time.After(waitTimeout):
		return "", fmt.Errorf("no message in queue %s within %v", queue, waitTimeout)
	}
}

// deleteQueues deletes the lab's queues on a channel of its own, so that
// it works even when another channel was closed by an error.
func deleteQueues(conn *amqp.Connection, queues ...string) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("opening a channel to clean up: %w", err)
	}
	defer ch.Close()
	for _, q := range queues {
		if _, err := ch.QueueDelete(q,
			false, // if-unused
			false, // if-empty
			false, // no-wait
		); err != nil {
			return fmt.Errorf("deleting queue %s: %w", q, err)
		}
	}
	return nil
}
