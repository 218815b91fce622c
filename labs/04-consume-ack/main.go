// Command 04-consume-ack shows what manual acknowledgements buy a consumer:
// a message acked only after processing comes back when the consumer
// crashes, prefetch caps how many unacked messages a consumer holds, a
// poison message goes to a dead-letter queue instead of looping or
// vanishing, and two consumers on one queue share its messages.
//
// It declares a durable queue bound to a durable topic exchange of its own,
// lab04.events, for every event name, with a dead-letter exchange and queue beside it,
// publishes its own messages (with publisher confirms, as lab 03 taught)
// and consumes them in four steps. It finishes by itself and deletes what
// it declared; Ctrl-C stops it cleanly at any point.
//
// Usage:
//
//	go run ./labs/04-consume-ack [-url amqp://guest:guest@127.0.0.1:5672/] [-exchange lab04.events] [-queue lab04.consume] [-prefetch 3] [-keep]
//
// The exchange is not the capstone's "events": the capstone's BookingService
// binds a durable queue there, which would receive the lab's test messages
// and poison messages too. The lab deletes it too at the end, if no other
// queue is bound to it (if-unused).
//
// With -keep everything stays (the queues for five minutes of disuse), so
// you can look at the dead-letter queue: rabbitmqctl list_queues name messages.
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
	"sort"
	"strings"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/contracts"
	"example.com/myevents/labs/labkit"
)

// defaultURL is the local development broker.
const defaultURL = "amqp://guest:guest@127.0.0.1:5672/"

// queueTTL is how long an unused queue lives (x-expires), so that queues
// kept with -keep, or left behind by a crash, clean themselves up.
const queueTTL = 5 * time.Minute

// waitTimeout bounds every wait for a delivery or a queue count, so the
// program never hangs on a broker that does not do what we expect.
const waitTimeout = 5 * time.Second

// requeueLoopFor is how long the pitfall of step 3 is allowed to spin.
const requeueLoopFor = 250 * time.Millisecond

// The poison messages of step 3: what a consumer cannot process however
// often it tries.
var (
	// Valid header, malformed body: the JSON stops in the middle.
	poisonMalformed = []byte(`{"id": "ev-poison", "name": `)
	// Valid body, but no x-event-name header to say which type it is.
	poisonNoHeader = []byte(`{"id":"ev-poison-2","name":"Concert","location_id":"loc-1","hall":"Main","capacity":500}`)
)

// Steps at which the program calls its probe, with the delivery in hand.
// Tests use them to look at the broker at exactly that moment.
const (
	stepCrashHeld    = "consumer A processed it and has not acked"
	stepRedelivered  = "consumer B got it again"
	stepPrefetchFull = "the consumer holds a full prefetch window"
	stepPrefetchDone = "processed a prefetch message"
	stepRequeued     = "pitfall: nacked with requeue"
	stepRejected     = "rejected without requeue"
	stepDeadLetters  = "the dead letters are in the dead-letter queue"
	stepWorker1      = "worker 1 processed"
	stepWorker2      = "worker 2 processed"
)

// probe is told about each step as it happens.
type probe func(step string, d amqp.Delivery)

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
	return runProbed(ctx, args, out, func(string, amqp.Delivery) {})
}

// runProbed is run with a probe; tests call it to watch the broker.
func runProbed(ctx context.Context, args []string, out io.Writer, observe probe) error {
	fs := flag.NewFlagSet("04-consume-ack", flag.ContinueOnError)
	amqpURL := fs.String("url", "", "AMQP URL of the broker (default $AMQP_URL, else "+defaultURL+")")
	exchange := fs.String("exchange", "lab04.events", "name of the durable topic exchange the queue is bound to (deleted at the end unless -keep, and only if no other queue is bound to it)")
	queue := fs.String("queue", "lab04.consume", "name of the queue to consume; its dead letters go to <queue>.dlx and <queue>.dlq")
	prefetch := fs.Int("prefetch", 3, "unacked deliveries a consumer may hold in step 2")
	keep := fs.Bool("keep", false, "keep the exchanges, the queues and the dead letters at the end instead of deleting them (the queues expire after five minutes unused)")
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
	if *prefetch < 1 || *prefetch > 65535 {
		return fmt.Errorf("-prefetch must be between 1 and 65535 (AMQP carries it in 16 bits), got %d", *prefetch)
	}
	// Check the names before dialing (labkit.CheckNames says why).
	if err := labkit.CheckNames(*exchange, *queue, "lab04.events"); err != nil {
		return err
	}
	dlx, dlq := *queue+".dlx", *queue+".dlq"

	// Connect. This connection publishes and hosts most consumers; consumer
	// A of step 1 gets a connection of its own, so that it can crash alone.
	conn, err := labkit.DialAMQPContext(ctx, *amqpURL, "myevents-04-consume-ack")
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

	// Declare the topology. Declaring is idempotent, and it is the
	// consumer's job: the queue must exist, bound, before anything is
	// published, or those messages go nowhere.
	if err := ch.ExchangeDeclare(*exchange, amqp.ExchangeTopic,
		true,  // durable
		false, // auto-delete
		false, // internal
		false, // no-wait
		nil,   // args
	); err != nil {
		return fmt.Errorf("declaring exchange %s: %w", *exchange, err)
	}
	// The dead-letter exchange and its queue: where rejected messages wait
	// for a human (or a repair job) instead of looping or vanishing.
	if err := ch.ExchangeDeclare(dlx, amqp.ExchangeFanout,
		true,  // durable
		true,  // auto-delete: goes away once its queue is gone
		false, // internal
		false, // no-wait
		nil,   // args
	); err != nil {
		return fmt.Errorf("declaring dead-letter exchange %s: %w", dlx, err)
	}
	if _, err := ch.QueueDeclare(dlq,
		true,  // durable
		false, // auto-delete
		false, // exclusive
		false, // no-wait
		amqp.Table{"x-expires": queueTTL.Milliseconds()},
	); err != nil {
		return fmt.Errorf("declaring dead-letter queue %s: %w", dlq, err)
	}
	if err := ch.QueueBind(dlq, "", dlx, false /* no-wait */, nil /* args */); err != nil {
		return fmt.Errorf("binding dead-letter queue %s to %s: %w", dlq, dlx, err)
	}
	// The service's queue. x-dead-letter-exchange is what makes a reject
	// without requeue move the message to dlx instead of dropping it.
	if _, err := ch.QueueDeclare(*queue,
		true,  // durable
		false, // auto-delete
		false, // exclusive
		false, // no-wait
		amqp.Table{
			"x-dead-letter-exchange": dlx,
			"x-expires":              queueTTL.Milliseconds(),
		},
	); err != nil {
		return fmt.Errorf("declaring queue %s: %w", *queue, err)
	}
	// Whatever happens below, delete what we declared when we leave.
	deleted := false
	defer func() {
		if !deleted && !*keep {
			_, _ = deleteTopology(conn, *queue, dlx, dlq, *exchange)
		}
	}()
	for _, name := range contracts.Names() {
		if err := ch.QueueBind(*queue, name, *exchange, false /* no-wait */, nil /* args */); err != nil {
			return fmt.Errorf("binding queue %s to %s for %s: %w", *queue, *exchange, name, err)
		}
	}
	// An earlier -keep run (or a crash) may have left messages: start empty.
	for _, q := range []string{*queue, dlq} {
		if _, err := ch.QueuePurge(q, false /* no-wait */); err != nil {
			return fmt.Errorf("purging queue %s: %w", q, err)
		}
	}
	fmt.Fprintf(out, "queue %q bound to exchange %q for %s\n", *queue, *exchange, strings.Join(contracts.Names(), ", "))
	fmt.Fprintf(out, "dead letters: rejected messages go to exchange %q and on to queue %q\n", dlx, dlq)

	// Publish with confirms, so every step starts from messages the broker
	// really has.
	if err := ch.Confirm(false /* no-wait */); err != nil {
		return fmt.Errorf("enabling publisher confirms: %w", err)
	}
	pub := publisher{ch: ch, exchange: *exchange}

	// Step 1: ack after processing, and a crash before the ack.
	fmt.Fprintln(out)
	fmt.Fprintln(out, "1. ack after processing: a consumer that crashes before its ack")
	if err := stepCrash(ctx, out, observe, conn, *amqpURL, pub, *queue); err != nil {
		return err
	}

	// Step 2: prefetch limits the unacked deliveries in flight.
	fmt.Fprintln(out)
	fmt.Fprintf(out, "2. prefetch %d: at most %d unacked deliveries per consumer\n", *prefetch, *prefetch)
	if err := stepPrefetch(ctx, out, observe, conn, pub, *queue, *prefetch); err != nil {
		return err
	}

	// Step 3: poison messages, the looping pitfall and the dead-letter fix.
	fmt.Fprintln(out)
	fmt.Fprintln(out, "3. poison messages: malformed JSON, and no x-event-name header")
	if err := stepPoison(ctx, out, observe, conn, pub, *queue, dlq); err != nil {
		return err
	}

	// Step 4: two consumers share one queue.
	fmt.Fprintln(out)
	fmt.Fprintln(out, "4. two consumers on one queue, prefetch 1; each round both finish one message")
	if err := stepShare(ctx, out, observe, conn, pub, *queue); err != nil {
		return err
	}

	fmt.Fprintln(out)
	if *keep {
		fmt.Fprintf(out, "kept queue %q, exchange %q and queue %q (they expire after %v unused), and exchange %q\n", *queue, dlx, dlq, queueTTL, *exchange)
		return nil
	}
	deleted = true
	inUse, err := deleteTopology(conn, *queue, dlx, dlq, *exchange)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "deleted queue %q, exchange %q and queue %q\n", *queue, dlx, dlq)
	if inUse {
		fmt.Fprintf(out, "kept exchange %q: queues are bound to it, so the if-unused delete was refused\n", *exchange)
	} else {
		fmt.Fprintf(out, "deleted exchange %q\n", *exchange)
	}
	return nil
}

// stepCrash publishes one message; consumer A processes it and crashes
// before acking; consumer B gets it again, marked redelivered.
func stepCrash(ctx context.Context, out io.Writer, observe probe, conn *amqp.Connection, amqpURL string, pub publisher, queue string) error {
	if err := pub.publish(ctx, "crash-1", contracts.EventCreatedName, eventBody("crash-1")); err != nil {
		return err
	}
	fmt.Fprintln(out, "  published crash-1")

	// Consumer A: its own connection, manual acks.
	connA, err := labkit.DialAMQPContext(ctx, amqpURL, "myevents-04-consume-ack consumer A")
	if err != nil {
		return err
	}
	defer connA.Close()
	a, err := consume(connA, queue, 1)
	if err != nil {
		return err
	}
	d, err := next(ctx, a.deliveries)
	if err != nil {
		return fmt.Errorf("consumer A: %w", err)
	}
	if _, err := process(d); err != nil {
		return fmt.Errorf("consumer A processing %s: %w", d.MessageId, err)
	}
	// Processed, not acked: the broker still owns the message. It is not
	// ready for anyone else, and it is not gone.
	ready, err := waitReady(ctx, pub.ch, queue, 0)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  consumer A got %s (redelivered=%t) and processed it; not acked yet: %d ready\n", d.MessageId, d.Redelivered, ready)
	observe(stepCrashHeld, d)

	// Crash: the connection goes away before the ack. The broker requeues
	// every message that connection had not acked.
	_ = connA.Close()
	fmt.Fprintln(out, "  consumer A crashed before acking (its connection closed)")
	ready, err = waitReady(ctx, pub.ch, queue, 1)
	if err != nil {
		return fmt.Errorf("waiting for the broker to put %s back after the crash: %w (a message acked before the crash is gone for good)", d.MessageId, err)
	}
	fmt.Fprintf(out, "  the broker put %s back: %d ready\n", d.MessageId, ready)

	// Consumer B gets the same message again, flagged as redelivered.
	b, err := consume(conn, queue, 1)
	if err != nil {
		return err
	}
	defer b.close()
	d, err = next(ctx, b.deliveries)
	if err != nil {
		return fmt.Errorf("consumer B: %w", err)
	}
	if _, err := process(d); err != nil {
		return fmt.Errorf("consumer B processing %s: %w", d.MessageId, err)
	}
	observe(stepRedelivered, d)
	// Ack only now, after processing.
	if err := d.Ack(false /* multiple */); err != nil {
		return fmt.Errorf("acking %s: %w", d.MessageId, err)
	}
	ready, err = waitReady(ctx, pub.ch, queue, 0)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  consumer B got %s (redelivered=%t), processed it, then acked: %d ready\n", d.MessageId, d.Redelivered, ready)
	fmt.Fprintf(out, "  %s was processed twice: delivery is at least once, so handlers must be idempotent\n", d.MessageId)
	return nil
}

// stepPrefetch shows that a consumer with prefetch n holds at most n
// unacked deliveries, and gets one more for each ack.
func stepPrefetch(ctx context.Context, out io.Writer, observe probe, conn *amqp.Connection, pub publisher, queue string, prefetch int) error {
	total := 3*prefetch + 1
	for i := 1; i <= total; i++ {
		id := fmt.Sprintf("prefetch-%02d", i)
		if err := pub.publish(ctx, id, contracts.EventCreatedName, eventBody(id)); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "  published %d messages\n", total)

	c, err := consume(conn, queue, prefetch)
	if err != nil {
		return err
	}
	defer c.close()
	// Take deliveries without acking until the window is full. The broker
	// keeps the rest ready in the queue: the ready count proves it.
	var held []amqp.Delivery
	for len(held) < prefetch {
		d, err := next(ctx, c.deliveries)
		if err != nil {
			return err
		}
		held = append(held, d)
	}
	ready, err := waitReady(ctx, pub.ch, queue, total-prefetch)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  the consumer holds %d deliveries and has acked none: %d still ready\n", len(held), ready)
	observe(stepPrefetchFull, held[0])

	// Process and ack the oldest: that frees one place, and the broker
	// sends exactly one more.
	done := 0
	settle := func(d amqp.Delivery) error {
		if _, err := process(d); err != nil {
			return fmt.Errorf("processing %s: %w", d.MessageId, err)
		}
		observe(stepPrefetchDone, d)
		if err := d.Ack(false /* multiple */); err != nil {
			return fmt.Errorf("acking %s: %w", d.MessageId, err)
		}
		done++
		return nil
	}
	if err := settle(held[0]); err != nil {
		return err
	}
	d, err := next(ctx, c.deliveries)
	if err != nil {
		return err
	}
	held = append(held[1:], d)
	ready, err = waitReady(ctx, pub.ch, queue, total-prefetch-1)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  processed and acked 1, and the broker sent 1 more: %d ready\n", ready)

	// Work through the rest the same way: process, then ack.
	for _, d := range held {
		if err := settle(d); err != nil {
			return err
		}
	}
	for done < total {
		d, err := next(ctx, c.deliveries)
		if err != nil {
			return err
		}
		if err := settle(d); err != nil {
			return err
		}
	}
	ready, err = waitReady(ctx, pub.ch, queue, 0)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  processed and acked the other %d, each after processing: %d ready\n", total-1, ready)
	return nil
}

// stepPoison publishes two messages no consumer can process. First the
// pitfall: nack with requeue, which hands them straight back, forever.
// Then the fix: reject without requeue, so the queue dead-letters them.
func stepPoison(ctx context.Context, out io.Writer, observe probe, conn *amqp.Connection, pub publisher, queue, dlq string) error {
	if err := pub.publish(ctx, "poison-1", contracts.EventCreatedName, poisonMalformed); err != nil {
		return err
	}
	if err := pub.publish(ctx, "poison-2", "", poisonNoHeader); err != nil {
		return err
	}

	// The pitfall: requeue=true puts the message back at the head of the
	// queue, the broker delivers it again at once, it fails again... Left
	// alone this never ends; we stop it after requeueLoopFor.
	loop, err := consume(conn, queue, 10)
	if err != nil {
		return err
	}
	deliveries := map[string]int{}
	stop := time.After(requeueLoopFor)
spin:
	for {
		select {
		case d, ok := <-loop.deliveries:
			if !ok {
				return errors.New("the consumer's channel closed during the requeue loop")
			}
			deliveries[d.MessageId]++
			observe(stepRequeued, d)
			if _, err := process(d); err == nil {
				return fmt.Errorf("poison message %s was processed without error", d.MessageId)
			}
			if err := d.Nack(false /* multiple */, true /* requeue */); err != nil {
				return fmt.Errorf("nacking %s: %w", d.MessageId, err)
			}
		case <-stop:
			break spin
		case <-ctx.Done():
			loop.close()
			return fmt.Errorf("in the requeue loop: %w", ctx.Err())
		}
	}
	// Closing the channel requeues what it still held.
	loop.close()
	fmt.Fprintf(out, "  pitfall, nack with requeue=true: in %v poison-1 was delivered %d times, poison-2 %d times\n",
		requeueLoopFor, deliveries["poison-1"], deliveries["poison-2"])

	// The fix: reject without requeue. The queue's dead-letter exchange
	// takes the message, with an x-death header saying why. consumeN is
	// this lab's exercise (solution.go; the template is exercise.go): it
	// acks what it processed and rejects what it cannot process.
	fmt.Fprintln(out, "  the fix, reject without requeue:")
	results, err := consumeN(ctx, conn, queue, 2, 10, func(d amqp.Delivery) error {
		_, err := process(d)
		return err
	})
	if err != nil {
		return err
	}
	var lines []string
	for _, r := range results {
		if r.err == nil {
			return fmt.Errorf("poison message %s was processed without error", r.id)
		}
		observe(stepRejected, amqp.Delivery{MessageId: r.id, Redelivered: r.redelivered})
		lines = append(lines, fmt.Sprintf("    %s: %v: rejected", r.id, r.err))
	}
	if len(lines) != 2 {
		return fmt.Errorf("consumeN reported %d deliveries, want 2", len(lines))
	}
	sort.Strings(lines)
	fmt.Fprintln(out, strings.Join(lines, "\n"))

	// Look into the dead-letter queue: both are there, with x-death.
	if _, err := waitReady(ctx, pub.ch, dlq, 2); err != nil {
		return err
	}
	dead, err := peek(conn, dlq, 2)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  dead-letter queue %q holds %d:\n", dlq, len(dead))
	for _, d := range dead {
		death := firstDeath(d)
		fmt.Fprintf(out, "    %s: x-death reason %s, from queue %q, count %d\n", d.MessageId, death.reason, death.queue, death.count)
	}
	observe(stepDeadLetters, amqp.Delivery{})
	ready, err := waitReady(ctx, pub.ch, queue, 0)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  main queue: %d ready\n", ready)
	return nil
}

// stepShare publishes ten messages to a queue with two consumers, each
// with prefetch 1. Each round both consumers finish one message and ack;
// the broker then gives each exactly one more, so the split is 5 and 5.
// (With unequal work, prefetch 1 lets the faster one take more: fair
// dispatch rather than strict turns.)
func stepShare(ctx context.Context, out io.Writer, observe probe, conn *amqp.Connection, pub publisher, queue string) error {
	const total = 10
	for i := 1; i <= total; i++ {
		id := fmt.Sprintf("share-%02d", i)
		if err := pub.publish(ctx, id, contracts.EventCreatedName, eventBody(id)); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "  published %d messages\n", total)
	worker1, err := consume(conn, queue, 1)
	if err != nil {
		return err
	}
	defer worker1.close()
	worker2, err := consume(conn, queue, 1)
	if err != nil {
		return err
	}
	defer worker2.close()

	counts := [2]int{}
	for range total / 2 {
		// Each worker holds one message (prefetch 1 allows no more)...
		d1, err := next(ctx, worker1.deliveries)
		if err != nil {
			return fmt.Errorf("worker 1: %w", err)
		}
		d2, err := next(ctx, worker2.deliveries)
		if err != nil {
			return fmt.Errorf("worker 2: %w", err)
		}
		// ...processes it, and acks it.
		for i, d := range []amqp.Delivery{d1, d2} {
			if _, err := process(d); err != nil {
				return fmt.Errorf("worker %d processing %s: %w", i+1, d.MessageId, err)
			}
			observe([]string{stepWorker1, stepWorker2}[i], d)
			if err := d.Ack(false /* multiple */); err != nil {
				return fmt.Errorf("worker %d acking %s: %w", i+1, d.MessageId, err)
			}
			counts[i]++
		}
	}
	fmt.Fprintf(out, "  worker 1 processed %d, worker 2 processed %d\n", counts[0], counts[1])
	return nil
}

// settled is what consumeN did with one delivery.
type settled struct {
	id          string // the message ID
	redelivered bool   // the broker had delivered it before
	err         error  // nil: processed and acked; otherwise why it was rejected
}

// process is the work a consumer does before it acks: find the event type
// from the x-event-name header and decode the JSON body into it. A real
// BookingService would store the event here.
func process(d amqp.Delivery) (contracts.Event, error) {
	name, _ := d.Headers["x-event-name"].(string)
	if name == "" {
		return nil, errors.New("no x-event-name header")
	}
	return contracts.Decode(name, d.Body)
}

// consumer is one consumer on a channel of its own.
type consumer struct {
	ch         *amqp.Channel
	deliveries <-chan amqp.Delivery
}

// close closes the consumer's channel; the broker requeues whatever it
// delivered there and nobody acked.
func (c consumer) close() { _ = c.ch.Close() }

// consume opens a channel, sets its prefetch and starts a consumer with
// manual acks.
func consume(conn *amqp.Connection, queue string, prefetch int) (consumer, error) {
	ch, err := conn.Channel()
	if err != nil {
		return consumer{}, fmt.Errorf("opening a consumer channel: %w", err)
	}
	// Prefetch: the broker sends at most this many unacked deliveries to
	// each consumer started on this channel from now on (global=false means
	// per consumer on RabbitMQ, not per channel as AMQP 0-9-1 says). Without
	// it, a consumer gets the whole queue at once.
	if err := ch.Qos(prefetch, 0 /* prefetch size: no byte limit */, false /* global */); err != nil {
		_ = ch.Close()
		return consumer{}, fmt.Errorf("setting prefetch %d: %w", prefetch, err)
	}
	// Consume, not ConsumeWithContext: when its context ends, the latter
	// cancels the consumer from a goroutine of its own, a second
	// synchronous call on this channel racing our Close (seen here to hang
	// Close for good). We watch ctx in next instead.
	deliveries, err := ch.Consume(queue,
		"",    // consumer tag: let the library pick a unique one
		false, // auto-ack: no, we ack after processing
		false, // exclusive
		false, // no-local
		false, // no-wait
		nil,   // args
	)
	if err != nil {
		_ = ch.Close()
		return consumer{}, fmt.Errorf("consuming queue %s: %w", queue, err)
	}
	return consumer{ch: ch, deliveries: deliveries}, nil
}

// next waits for the next delivery, the end of ctx, or waitTimeout.
func next(ctx context.Context, deliveries <-chan amqp.Delivery) (amqp.Delivery, error) {
	select {
	case d, ok := <-deliveries:
		if !ok {
			return amqp.Delivery{}, errors.New("the consumer's channel closed")
		}
		return d, nil
	case <-ctx.Done():
		return amqp.Delivery{}, fmt.Errorf("waiting for a delivery: %w", ctx.Err())
	case <-time.After(waitTimeout):
		return amqp.Delivery{}, fmt.Errorf("no delivery within %v", waitTimeout)
	}
}

// waitReady waits until the queue holds want ready messages and returns
// how many it holds. Ready messages are those not delivered to anyone;
// unacked ones are not counted. If the count is still not want after
// waitTimeout, it returns the count and an error that says so: the story
// the program tells is then not what the broker did.
func waitReady(ctx context.Context, ch *amqp.Channel, queue string, want int) (int, error) {
	deadline := time.Now().Add(waitTimeout)
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
		if q.Messages == want {
			return q.Messages, nil
		}
		if time.Now().After(deadline) {
			return q.Messages, fmt.Errorf("queue %s holds %d ready messages after %v, not %d", queue, q.Messages, waitTimeout, want)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for queue %s: %w", queue, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// peek reads up to n messages from a queue and puts them back, sorted by
// message ID: the dead letters stay where an operator would look for them.
func peek(conn *amqp.Connection, queue string, n int) ([]amqp.Delivery, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("opening a channel to read %s: %w", queue, err)
	}
	// Closing the channel hands back everything we got and did not ack.
	defer ch.Close()
	var got []amqp.Delivery
	for len(got) < n {
		d, ok, err := ch.Get(queue, false /* auto-ack */)
		if err != nil {
			return nil, fmt.Errorf("reading queue %s: %w", queue, err)
		}
		if !ok {
			break
		}
		got = append(got, d)
	}
	sort.Slice(got, func(i, j int) bool { return got[i].MessageId < got[j].MessageId })
	return got, nil
}

// death is the first entry of a dead-lettered message's x-death header.
type death struct {
	reason, queue string
	count         int64
}

// firstDeath reads the x-death header the broker adds when it
// dead-letters a message: why, from which queue, how often.
func firstDeath(d amqp.Delivery) death {
	list, _ := d.Headers["x-death"].([]any)
	if len(list) == 0 {
		return death{reason: "(no x-death header)"}
	}
	entry, _ := list[0].(amqp.Table)
	reason, _ := entry["reason"].(string)
	queue, _ := entry["queue"].(string)
	count, _ := entry["count"].(int64)
	return death{reason: reason, queue: queue, count: count}
}

// publisher publishes on a channel in confirm mode.
type publisher struct {
	ch       *amqp.Channel
	exchange string
}

// publish sends one message, persistent, and waits for its confirm. An
// empty event name publishes with routing key event.created and no
// x-event-name header (a broken producer).
func (p publisher) publish(ctx context.Context, id, eventName string, body []byte) error {
	key, headers := eventName, amqp.Table{"x-event-name": eventName}
	if eventName == "" {
		key, headers = contracts.EventCreatedName, nil
	}
	dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, p.exchange, key,
		false, // mandatory
		false, // immediate
		amqp.Publishing{
			Headers:      headers,
			ContentType:  "application/json",
			DeliveryMode: amqp.Persistent,
			MessageId:    id,
			Timestamp:    time.Now(),
			Body:         body,
		})
	if err != nil {
		return fmt.Errorf("publishing %s: %w", id, err)
	}
	acked, err := dc.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("waiting for the confirm of %s: %w", id, err)
	}
	if !acked {
		return fmt.Errorf("the broker nacked %s", id)
	}
	return nil
}

// eventBody is the JSON of a valid contracts.EventCreated.
func eventBody(id string) []byte {
	start := time.Date(2026, 11, 27, 20, 0, 0, 0, time.UTC)
	body, _ := json.Marshal(contracts.EventCreated{
		ID: "ev-" + id, Name: "Concert " + id, LocationID: "loc-1", Hall: "Main",
		Capacity: 500, StartDate: start, EndDate: start.Add(3 * time.Hour),
	})
	return body
}

// deleteTopology deletes the queue, the dead-letter queue and the
// dead-letter exchange, then the durable exchange the queue was bound to if
// no queue is bound to it any more (inUse reports that the broker refused
// for that reason), on a channel of its own so that it works even when
// another channel was closed by an error.
func deleteTopology(conn *amqp.Connection, queue, dlx, dlq, exchange string) (inUse bool, err error) {
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("opening a channel to clean up: %w", err)
	}
	defer ch.Close()
	for _, q := range []string{queue, dlq} {
		if _, err := ch.QueueDelete(q,
			false, // if-unused
			false, // if-empty
			false, // no-wait
		); err != nil {
			return false, fmt.Errorf("deleting queue %s: %w", q, err)
		}
	}
	if err := ch.ExchangeDelete(dlx, false /* if-unused */, false /* no-wait */); err != nil {
		return false, fmt.Errorf("deleting exchange %s: %w", dlx, err)
	}
	err = ch.ExchangeDelete(exchange, true /* if-unused */, false /* no-wait */)
	var amqpErr *amqp.Error
	if errors.As(err, &amqpErr) && amqpErr.Code == amqp.PreconditionFailed {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("deleting exchange %s: %w", exchange, err)
	}
	return false, nil
}
