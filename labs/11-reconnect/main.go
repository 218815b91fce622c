// Command 11-reconnect shows what a consumer needs when the broker closes
// its connection: a consumer that dials once goes deaf; amqp091-go's
// automatic recovery reconnects by itself but acknowledges with delivery
// tags of the dead channel, so it acks the wrong messages and loses one;
// a reconnect loop of our own, beside a publisher that resends whatever was
// not confirmed, processes every message at least once.
//
// Each part causes its outage with `rabbitmqctl close_connection`, aimed at
// its own connection only: every connection of a run carries a unique
// connection_name client property, and the lab closes nothing else (a
// shared broker has other people's connections). The three parts share one
// classic queue bound to a durable topic exchange of the lab's own,
// lab11.events, not the capstone's "events" (whose durable BookingService
// queue would collect the lab's made-up bookings). The program finishes by
// itself in a few seconds and deletes the queue; the exchange stays, empty.
// Ctrl-C stops it cleanly at any point.
//
// Usage:
//
//	go run ./labs/11-reconnect [-url amqp://guest:guest@127.0.0.1:5672/] [-exchange lab11.events] [-queue lab11.reconnect] [-conn-name myevents-11-reconnect] [-rabbitmqctl rabbitmqctl]
//
// rabbitmqctl must reach the broker; with the Docker broker, pass
// -rabbitmqctl "docker compose -f docker/compose.yaml exec -T rabbitmq rabbitmqctl".
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"sort"
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

// queueTTL is how long the queue lives unused (x-expires), so that a queue
// left behind by a crashed run cleans itself up.
const queueTTL = 5 * time.Minute

// waitTimeout bounds every wait for a delivery, a notification or a count,
// so the program never hangs on a broker that does not do what we expect.
const waitTimeout = 15 * time.Second

// closeReason is what the broker tells a connection the lab closes.
const closeReason = "closed by lab 11"

// Part 2: the prefetch of the consumer with automatic recovery, and how
// long recovery waits before it dials again (the library adds up to 500 ms
// of jitter).
const (
	recoveryPrefetch = 4
	recoveryInterval = 200 * time.Millisecond
)

// Part 3: the consumer's prefetch; the message (counted in distinct
// messages processed) that the consumer is holding, processed and not yet
// acked, when the lab cuts its connection; how many more messages the
// publisher must get confirmed after its own reconnect before it stops;
// its pace and how many confirms it may have outstanding; and the backoff
// of both reconnect loops.
const (
	fixPrefetch      = 20
	fixHoldAt        = 100
	fixAfterRecovery = 200
	publishEvery     = time.Millisecond
	publishWindow    = 16
	backoffFirst     = 100 * time.Millisecond
	backoffLongest   = 2 * time.Second
)

// Steps at which the program calls its probe. Tests use them to look at the
// broker at exactly that moment.
const (
	stepNaiveDeaf       = "1: messages published after the naive consumer died"
	stepRecoveryStopped = "2: the consumer with automatic recovery stopped"
	stepFixHolding      = "3: the consumer holds a processed, unacked delivery"
	stepFixDone         = "3: the publisher and the consumer stopped"
)

// report is what the program knows at a step.
type report struct {
	published   []string          // message IDs, all confirmed by the broker
	calls       map[string]int    // handler calls per message ID
	heldTags    map[string]uint64 // part 2: tags of the deliveries held over the outage
	newTags     map[string]uint64 // part 2: tags of the same Go channel's deliveries after recovery
	channelErr  *amqp.Error       // part 2: how the broker closed the recovered channel
	held        string            // part 3: the message held across the outage
	reconnects  [2]int            // part 3: consumer, publisher
	unconfirmed int               // part 3: publishes not confirmed at the outage, sent again
	ackRefused  int               // part 3: acks refused because their channel was gone
}

// probe is told about each step as it happens.
type probe func(step string, r report)

// ctlFunc runs rabbitmqctl with args and returns its output.
type ctlFunc func(ctx context.Context, args ...string) (string, error)

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
	return runProbed(ctx, args, out, nil, func(string, report) {})
}

// runProbed is run with a probe and, when ctl is not nil, the test's own
// way to reach rabbitmqctl instead of -rabbitmqctl.
func runProbed(ctx context.Context, args []string, out io.Writer, ctl ctlFunc, observe probe) error {
	fs := flag.NewFlagSet("11-reconnect", flag.ContinueOnError)
	amqpURL := fs.String("url", "", "AMQP URL of the broker (default $AMQP_URL, else "+defaultURL+")")
	exchange := fs.String("exchange", "lab11.events", "name of the durable topic exchange the lab publishes to (it stays on the broker, empty)")
	queue := fs.String("queue", "lab11.reconnect", "name of the queue the three parts consume (deleted at the end)")
	connName := fs.String("conn-name", "myevents-11-reconnect", "prefix of the connection names the broker shows; the lab adds a per-run token and the role")
	ctlCommand := fs.String("rabbitmqctl", "rabbitmqctl", "command that runs rabbitmqctl against the broker, split at spaces")
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
	// A token per run, so that two runs on one broker never close each
	// other's connections.
	token := fmt.Sprintf("%08x", rand.Uint32())
	l := &lab{
		url:        *amqpURL,
		exchange:   *exchange,
		queue:      *queue,
		connName:   *connName + "." + token,
		ctl:        ctl,
		ctlCommand: *ctlCommand,
		observe:    observe,
		out:        out,
	}
	return l.run(ctx)
}

// lab holds what the three parts share.
type lab struct {
	url, exchange, queue string
	connName             string // prefix.token; each connection adds its role
	ctl                  ctlFunc
	ctlCommand           string // -rabbitmqctl, used when ctl is nil
	observe              probe
	out                  io.Writer

	ch *amqp.Channel // on the lab's own connection, which is never cut: declares, publishes (confirm mode), counts
}

// name returns the connection name of one role in this run.
func (l *lab) name(role string) string { return l.connName + "." + role }

func (l *lab) run(ctx context.Context) error {
	// Connect. This connection declares, publishes for parts 1 and 2, and
	// counts; the lab never cuts it.
	conn, err := labkit.DialAMQP(l.url, l.name("lab"))
	if err != nil {
		return err
	}
	defer conn.Close()
	if l.ctl == nil {
		if l.ctl, err = commandCtl(l.ctlCommand); err != nil {
			return err
		}
	}
	fmt.Fprintf(l.out, "connected to RabbitMQ at %s\n", labkit.Redact(l.url))
	if l.ch, err = conn.Channel(); err != nil {
		return fmt.Errorf("opening a channel: %w", err)
	}

	// Declare the exchange and the queue, and bind them. A classic queue
	// (said explicitly: a broker may default to quorum queues) puts a
	// requeued message back in its old place, which part 2 relies on.
	if err := l.ch.ExchangeDeclare(l.exchange, amqp.ExchangeTopic,
		true,  // durable
		false, // auto-delete
		false, // internal
		false, // no-wait
		nil,   // args
	); err != nil {
		return fmt.Errorf("declaring exchange %s: %w", l.exchange, err)
	}
	if _, err := l.ch.QueueDeclare(l.queue,
		true,  // durable
		false, // auto-delete
		false, // exclusive
		false, // no-wait
		amqp.Table{
			amqp.QueueTypeArg: amqp.QueueTypeClassic,
			"x-expires":       queueTTL.Milliseconds(),
		},
	); err != nil {
		return fmt.Errorf("declaring queue %s: %w", l.queue, err)
	}
	// Whatever happens below, delete the queue when we leave.
	deleted := false
	defer func() {
		if !deleted {
			_ = deleteQueue(conn, l.queue)
		}
	}()
	if err := l.ch.QueueBind(l.queue, contracts.EventBookedName, l.exchange, false /* no-wait */, nil /* args */); err != nil {
		return fmt.Errorf("binding queue %s to %s: %w", l.queue, l.exchange, err)
	}
	fmt.Fprintf(l.out, "queue %q bound to exchange %q for %s\n", l.queue, l.exchange, contracts.EventBookedName)
	// Publish with confirms (lab 03), so every part starts from messages
	// the broker really has.
	if err := l.ch.Confirm(false /* no-wait */); err != nil {
		return fmt.Errorf("enabling publisher confirms: %w", err)
	}
	fmt.Fprintln(l.out, "each outage: the lab closes its own connection with rabbitmqctl close_connection")

	parts := []struct {
		title string
		run   func(context.Context) error
	}{
		{"1. the pitfall: dial once, consume until the deliveries channel closes", l.partNaive},
		{"2. automatic recovery: amqp.Config{Recovery: ...} reconnects and consumes again by itself", l.partRecovery},
		{"3. the fix: reconnect loops with backoff, acks only on the delivery's own channel, resends of what was not confirmed", l.partFix},
	}
	for _, p := range parts {
		if err := ctx.Err(); err != nil {
			return err
		}
		// An earlier part (or a crashed run) may have left messages.
		if _, err := l.ch.QueuePurge(l.queue, false /* no-wait */); err != nil {
			return fmt.Errorf("purging queue %s: %w", l.queue, err)
		}
		fmt.Fprintln(l.out)
		fmt.Fprintln(l.out, p.title)
		if err := p.run(ctx); err != nil {
			return err
		}
	}

	fmt.Fprintln(l.out)
	deleted = true
	if err := deleteQueue(conn, l.queue); err != nil {
		return err
	}
	fmt.Fprintf(l.out, "deleted queue %q\n", l.queue)
	return nil
}

// partNaive is the original chapter's consumer: one connection, one
// channel, one loop over the deliveries. It acks after processing, as lab
// 04 taught, and still goes deaf for good when its connection dies.
func (l *lab) partNaive(ctx context.Context) error {
	name := l.name("naive")
	conn, err := labkit.DialAMQP(l.url, name)
	if err != nil {
		return err
	}
	defer conn.Close()
	// The naive consumer does not listen for the close; the lab does, to
	// print the reason.
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("opening the consumer's channel: %w", err)
	}
	deliveries, err := ch.Consume(l.queue,
		"",    // consumer tag: let the library pick one
		false, // auto-ack: no, ack after processing
		false, // exclusive
		false, // no-local
		false, // no-wait
		nil,   // args
	)
	if err != nil {
		return fmt.Errorf("consuming queue %s: %w", l.queue, err)
	}

	// The consume loop: when the connection dies, the library closes
	// deliveries, the range ends, and with it the consumer. Nothing here
	// will ever dial again.
	processed := make(chan string, 8)
	loopEnded := make(chan struct{})
	go func() {
		defer close(loopEnded)
		for d := range deliveries {
			if _, err := process(d); err != nil {
				_ = d.Reject(false /* requeue */)
				continue
			}
			_ = d.Ack(false /* multiple */)
			select {
			case processed <- d.MessageId:
			default:
			}
		}
	}()

	before := []string{"naive-1", "naive-2", "naive-3"}
	if err := l.publish(ctx, before...); err != nil {
		return err
	}
	var got []string
	for range before {
		select {
		case id := <-processed:
			got = append(got, id)
		case <-ctx.Done():
			return fmt.Errorf("waiting for the naive consumer: %w", ctx.Err())
		case <-time.After(waitTimeout):
			return fmt.Errorf("the naive consumer processed %v within %v, want %v", got, waitTimeout, before)
		}
	}
	sort.Strings(got)
	fmt.Fprintf(l.out, "  the consumer processed and acked %s\n", strings.Join(got, ", "))

	// The outage: the broker closes the consumer's connection.
	if err := l.closeConnections(ctx, name); err != nil {
		return err
	}
	reason, err := waitClosed(ctx, closed)
	if err != nil {
		return fmt.Errorf("waiting for the naive consumer's connection to close: %w", err)
	}
	fmt.Fprintf(l.out, "  the broker closed the consumer's connection: %s\n", reason.Reason)
	select {
	case <-loopEnded:
	case <-ctx.Done():
		return fmt.Errorf("waiting for the naive consume loop to end: %w", ctx.Err())
	case <-time.After(waitTimeout):
		return fmt.Errorf("the naive consume loop still runs %v after its connection closed", waitTimeout)
	}
	fmt.Fprintln(l.out, "  the deliveries channel closed, the consume loop returned, and nothing dials again")

	// Events keep coming; nobody takes them.
	after := []string{"naive-4", "naive-5", "naive-6"}
	if err := l.publish(ctx, after...); err != nil {
		return err
	}
	q, err := l.waitQueue(ctx, len(after), 0)
	if err != nil {
		return err
	}
	fmt.Fprintf(l.out, "  published %s afterwards: %d messages wait in the queue, %d consumers\n", strings.Join(after, ", "), q.Messages, q.Consumers)
	l.observe(stepNaiveDeaf, report{published: after})
	return nil
}

// partRecovery consumes with amqp091-go's automatic recovery and acks
// after processing, exactly like a careful consumer. It holds three
// prefetched deliveries over an outage, then acks them: with the tags they
// came with, which the recovered channel has handed out again, to other
// messages.
func (l *lab) partRecovery(ctx context.Context) error {
	if err := l.publish(ctx, "rec-1", "rec-2", "rec-3", "rec-4"); err != nil {
		return err
	}
	fmt.Fprintf(l.out, "  published rec-1 .. rec-4; the consumer acks after processing, prefetch %d\n", recoveryPrefetch)

	// Dial with Recovery. On a lost connection the library dials again,
	// reopens every channel with its Qos, redeclares what was declared on
	// it and consumes again, under the same consumer tag, into the same Go
	// channel. It does not know which deliveries the application still
	// holds.
	name := l.name("recovery")
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	conn, err := amqp.DialConfig(l.url, amqp.Config{
		Dial:       amqp.DefaultDial(labkit.DialTimeout),
		Properties: props,
		Recovery: &amqp.Recovery{
			ReconnectionConfig: &amqp.ReconnectionConfig{MaxRetryCount: 10, RetryInterval: recoveryInterval},
		},
	})
	if err != nil {
		return fmt.Errorf("connecting to RabbitMQ at %s with automatic recovery: %w", labkit.Redact(l.url), err)
	}
	// Closing the connection also ends any recovery in progress.
	defer conn.Close()
	connStates := make(chan *amqp.StateChanged, 16)
	conn.NotifyStateChange(connStates)
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("opening the consumer's channel: %w", err)
	}
	// With recovery, a channel's NotifyClose reports every closure and
	// stays registered across them.
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	chStates := make(chan *amqp.StateChanged, 16)
	ch.NotifyStateChange(chStates)
	if err := ch.Qos(recoveryPrefetch, 0 /* prefetch size: no byte limit */, false /* global */); err != nil {
		return fmt.Errorf("setting prefetch %d: %w", recoveryPrefetch, err)
	}
	deliveries, err := ch.Consume(l.queue,
		"",    // consumer tag: let the library pick one
		false, // auto-ack: no, ack after processing
		false, // exclusive
		false, // no-local
		false, // no-wait
		nil,   // args
	)
	if err != nil {
		return fmt.Errorf("consuming queue %s: %w", l.queue, err)
	}

	calls := map[string]int{}
	handle := func(d amqp.Delivery) error {
		if _, err := process(d); err != nil {
			return fmt.Errorf("processing %s: %w", d.MessageId, err)
		}
		calls[d.MessageId]++
		return nil
	}

	// Before the outage: the whole prefetch window arrives; the consumer
	// processes and acks the first, and holds the other three.
	var held []amqp.Delivery
	for range recoveryPrefetch {
		d, err := next(ctx, deliveries)
		if err != nil {
			return fmt.Errorf("before the outage: %w", err)
		}
		held = append(held, d)
	}
	first := held[0]
	held = held[1:]
	if err := handle(first); err != nil {
		return err
	}
	if err := first.Ack(false /* multiple */); err != nil {
		return fmt.Errorf("acking %s: %w", first.MessageId, err)
	}
	heldTags := map[string]uint64{}
	for _, d := range held {
		heldTags[d.MessageId] = d.DeliveryTag
	}
	fmt.Fprintf(l.out, "  before the outage: processed and acked %s; %s wait in the consumer\n", tagged(first), taggedList(held))

	// The outage. The broker requeues the three unacked messages into
	// their old places at the head of the queue.
	if err := l.closeConnections(ctx, name); err != nil {
		return err
	}
	reason, err := waitClosed(ctx, chClosed)
	if err != nil {
		return fmt.Errorf("waiting for the channel to learn of the outage: %w", err)
	}
	fmt.Fprintf(l.out, "  the broker closed the connection: %s\n", reason.Reason)
	if err := l.publish(ctx, "rec-5"); err != nil {
		return err
	}
	fmt.Fprintln(l.out, "  published rec-5 during the outage")

	// Recovery: wait until the library says the connection is open again,
	// then read what the same Go channel delivers now.
	if err := waitState(ctx, connStates, 1); err != nil {
		return fmt.Errorf("waiting for recovery: %w", err)
	}
	var again []amqp.Delivery
	newTags := map[string]uint64{}
	byTag := map[uint64]string{}
	for range recoveryPrefetch {
		d, err := next(ctx, deliveries)
		if err != nil {
			return fmt.Errorf("after recovery: %w", err)
		}
		again = append(again, d)
		newTags[d.MessageId] = d.DeliveryTag
		byTag[d.DeliveryTag] = d.MessageId
	}
	fmt.Fprintf(l.out, "  recovery reconnected and consumed again; the same Go channel delivered %s\n", taggedList(again))

	// The trap: the consumer finishes the deliveries it held and acks
	// each with the tag it came with. A delivery tag is a number the
	// broker counts per channel, from 1; the recovered channel is a new
	// channel on the broker, so these numbers now name other deliveries.
	for _, d := range held {
		if err := handle(d); err != nil {
			return err
		}
		if err := d.Ack(false /* multiple */); err != nil {
			return fmt.Errorf("acking %s: %w", d.MessageId, err)
		}
		other, issued := byTag[d.DeliveryTag]
		switch {
		case !issued:
			fmt.Fprintf(l.out, "  acked %s with its old tag %d, which the new channel never issued\n", d.MessageId, d.DeliveryTag)
		case calls[other] == 0:
			fmt.Fprintf(l.out, "  acked %s with its old tag %d; on the new channel that is %s, so the broker removes %s, unprocessed\n", d.MessageId, d.DeliveryTag, other, other)
		default:
			fmt.Fprintf(l.out, "  acked %s with its old tag %d; on the new channel that is %s, so the broker removes %s\n", d.MessageId, d.DeliveryTag, other, other)
		}
	}

	// Then the redelivered copies, acked with their own, new tags. The
	// first tag is still free; the second was used up above.
	for _, d := range again[:2] {
		if err := handle(d); err != nil {
			return err
		}
		if err := d.Ack(false /* multiple */); err != nil {
			return fmt.Errorf("acking %s: %w", d.MessageId, err)
		}
	}
	chErr, err := waitClosed(ctx, chClosed)
	if err != nil {
		return fmt.Errorf("waiting for the broker to refuse the ack of %s: %w", again[1].MessageId, err)
	}
	fmt.Fprintf(l.out, "  processed and acked the redelivered %s and %s: the broker closed the channel: %s (%d)\n",
		tagged(again[0]), tagged(again[1]), chErr.Reason, chErr.Code)
	// Recovery reopens the channel at once: tags start at 1 again, and
	// every delivery the consumer still holds carries a stale one. This is
	// the livelock: ack, channel closed, reopened, ack, closed...
	if err := waitState(ctx, chStates, 2); err != nil {
		return fmt.Errorf("waiting for the channel to reopen: %w", err)
	}
	fmt.Fprintln(l.out, "  recovery reopened the channel, tags from 1 again; the lab stops the consumer here")
	if err := conn.Close(); err != nil && !errors.Is(err, amqp.ErrClosed) {
		return fmt.Errorf("closing the consumer's connection: %w", err)
	}

	// Count what the broker kept, and compare with what was processed.
	q, err := l.waitQueue(ctx, 0, 0)
	if err != nil {
		return err
	}
	ids := []string{"rec-1", "rec-2", "rec-3", "rec-4", "rec-5"}
	var counts, lost []string
	for _, id := range ids {
		counts = append(counts, fmt.Sprintf("%s %d", id, calls[id]))
		if calls[id] == 0 {
			lost = append(lost, id)
		}
	}
	fmt.Fprintf(l.out, "  left in the queue: %d messages; handler calls: %s\n", q.Messages, strings.Join(counts, ", "))
	if q.Messages == 0 && len(lost) > 0 {
		fmt.Fprintf(l.out, "  lost: %s, acked by a stale tag and never processed\n", strings.Join(lost, ", "))
	}
	l.observe(stepRecoveryStopped, report{calls: calls, heldTags: heldTags, newTags: newTags, channelErr: chErr})
	return nil
}

// partFix runs a consumer and a publisher that each have their own
// reconnect loop, cuts the consumer's connection while it holds a
// processed but unacked delivery, then the publisher's while it publishes,
// and checks that every confirmed message was processed.
func (l *lab) partFix(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	cons := &fixConsumer{
		url: l.url, queue: l.queue, name: l.name("consumer"),
		holding: make(chan string, 1),
		release: make(chan struct{}),
		drain:   make(chan struct{}),
		lost:    make(chan *amqp.Error, 4),
		calls:   map[string]int{},
	}
	pub := &fixPublisher{
		url: l.url, exchange: l.exchange, name: l.name("publisher"),
		lost: make(chan *amqp.Error, 4),
	}
	stopPublishing := make(chan struct{})
	consDone, pubDone := make(chan error, 1), make(chan error, 1)
	go func() { consDone <- cons.run(ctx) }()
	go func() { pubDone <- pub.run(ctx, stopPublishing) }()
	// On every way out, stop both and wait for them: they close their
	// connections, and the broker requeues whatever was not acked.
	consErr, pubErr := error(nil), error(nil)
	consOver, pubOver := false, false
	defer func() {
		cancel()
		if !consOver {
			<-consDone
		}
		if !pubOver {
			<-pubDone
		}
	}()
	fail := func(what string) error {
		// A loop that ended on its own has the better explanation.
		select {
		case err := <-consDone:
			consOver = true
			return fmt.Errorf("%s: the consumer stopped: %w", what, err)
		case err := <-pubDone:
			pubOver = true
			return fmt.Errorf("%s: the publisher stopped: %w", what, err)
		default:
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
		return fmt.Errorf("%s: not within %v", what, waitTimeout)
	}

	// Messages flow until the consumer holds its 100th message,
	// processed and not yet acked.
	var held string
	select {
	case held = <-cons.holding:
	case <-ctx.Done():
		return fail("waiting for the consumer to hold a message")
	case <-time.After(waitTimeout):
		return fail("waiting for the consumer to hold a message")
	}
	l.observe(stepFixHolding, report{held: held})

	// Cut the consumer's connection while it holds that message.
	if err := l.closeConnections(ctx, cons.name); err != nil {
		return err
	}
	var reason *amqp.Error
	select {
	case reason = <-cons.lost:
	case <-ctx.Done():
		return fail("waiting for the consumer to learn of the outage")
	case <-time.After(waitTimeout):
		return fail("waiting for the consumer to learn of the outage")
	}
	fmt.Fprintf(l.out, "  the consumer held %s, processed and not yet acked, when the broker closed its connection: %s\n", held, reason.Reason)
	close(cons.release)
	if !waitFor(ctx, func() bool { return cons.stats().ackRefused >= 1 }) {
		return fail("waiting for the consumer's ack of " + held)
	}
	fmt.Fprintf(l.out, "  its ack of %s failed, as it must: that channel is gone, and the broker has put the message back\n", held)

	// Cut the publisher's connection while it publishes.
	if err := l.closeConnections(ctx, pub.name); err != nil {
		return err
	}
	select {
	case reason = <-pub.lost:
	case <-ctx.Done():
		return fail("waiting for the publisher to learn of the outage")
	case <-time.After(waitTimeout):
		return fail("waiting for the publisher to learn of the outage")
	}
	fmt.Fprintf(l.out, "  the broker closed the publisher's connection: %s\n", reason.Reason)
	if !waitFor(ctx, func() bool { return pub.stats().afterReconnect >= fixAfterRecovery }) {
		return fail("waiting for the publisher to publish again")
	}

	// Stop publishing; the publisher returns once every message it ever
	// published is confirmed.
	close(stopPublishing)
	select {
	case pubErr = <-pubDone:
		pubOver = true
	case <-ctx.Done():
		return fail("waiting for the publisher's last confirms")
	case <-time.After(waitTimeout):
		return fail("waiting for the publisher's last confirms")
	}
	if pubErr != nil {
		return fmt.Errorf("the publisher: %w", pubErr)
	}
	ps := pub.stats()

	// Let the consumer work through the queue: every confirmed message
	// processed, and nothing ready any more. Then it cancels its consumer,
	// finishes the deliveries already on their way, and returns.
	if !waitFor(ctx, func() bool { return len(missing(ps.confirmed, cons.stats().calls)) == 0 }) {
		return fail("waiting for the consumer to process every message")
	}
	if _, err := l.waitQueue(ctx, 0, 1); err != nil {
		return err
	}
	close(cons.drain)
	select {
	case consErr = <-consDone:
		consOver = true
	case <-ctx.Done():
		return fail("waiting for the consumer to finish")
	case <-time.After(waitTimeout):
		return fail("waiting for the consumer to finish")
	}
	if consErr != nil {
		return fmt.Errorf("the consumer: %w", consErr)
	}
	cs := cons.stats()

	// The summary: the broker's count and the consumer's record.
	q, err := l.waitQueue(ctx, 0, 0)
	if err != nil {
		return err
	}
	handlerCalls := 0
	for _, n := range cs.calls {
		handlerCalls += n
	}
	fmt.Fprintf(l.out, "  reconnects: consumer %d, publisher %d\n", cs.reconnects, ps.reconnects)
	fmt.Fprintf(l.out, "  published and confirmed: %d messages; not confirmed at the outage and sent again: %d\n", len(ps.confirmed), ps.unconfirmed)
	fmt.Fprintf(l.out, "  processed: %d distinct messages, %d missing, in %d handler calls; duplicates skipped by message ID: %d\n",
		len(cs.calls), len(missing(ps.confirmed, cs.calls)), handlerCalls, handlerCalls-len(cs.calls))
	fmt.Fprintf(l.out, "  left in the queue: %d messages\n", q.Messages)
	l.observe(stepFixDone, report{
		published: ps.confirmed, calls: cs.calls, held: held,
		reconnects: [2]int{cs.reconnects, ps.reconnects}, unconfirmed: ps.unconfirmed, ackRefused: cs.ackRefused,
	})
	return nil
}

// fixConsumer consumes with a reconnect loop of its own: every session is
// a new connection, a new channel, Qos and Consume, and a delivery is only
// ever acked on the channel it arrived on.
type fixConsumer struct {
	url, queue, name string
	holding          chan string      // gets the ID of the held message
	release          chan struct{}    // closed to let the held message go on to its ack
	drain            chan struct{}    // closed to cancel the consumer and return
	lost             chan *amqp.Error // each session's connection error
	held             bool             // the hold has happened (consumer goroutine only)
	mu               sync.Mutex       // guards the fields below
	calls            map[string]int   // handler calls per message ID: the idempotency record
	ackRefused       int              // acks refused because the channel was gone
	dropped          int              // deliveries of a dead channel, dropped unprocessed
	reconnects       int              // sessions after the first
}

// fixStats is a copy of a consumer's counters.
type fixStats struct {
	calls                           map[string]int
	ackRefused, dropped, reconnects int
}

func (c *fixConsumer) stats() fixStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	calls := make(map[string]int, len(c.calls))
	for id, n := range c.calls {
		calls[id] = n
	}
	return fixStats{calls: calls, ackRefused: c.ackRefused, dropped: c.dropped, reconnects: c.reconnects}
}

// run is the reconnect loop: a session until it breaks, a wait that
// doubles from 100 ms up to 2 s (with jitter, so that many consumers do not
// come back in lockstep), and a new session. It returns nil once drained,
// and ctx's error when ctx ends.
func (c *fixConsumer) run(ctx context.Context) error {
	bo := backoff{next: backoffFirst, longest: backoffLongest}
	for session := 0; ; session++ {
		done, consumed, err := c.session(ctx, session)
		if done {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if consumed {
			bo = backoff{next: backoffFirst, longest: backoffLongest}
		}
		wait := bo.wait()
		slog.Debug("consumer: session ended; reconnecting", "err", err, "in", wait)
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// session dials, opens a channel, sets the prefetch, consumes, and handles
// deliveries until the deliveries channel closes (the connection or the
// channel died), ctx ends, or drain asks it to finish.
func (c *fixConsumer) session(ctx context.Context, n int) (done, consumed bool, err error) {
	conn, err := labkit.DialAMQP(c.url, c.name)
	if err != nil {
		return false, false, err
	}
	// Closing the connection hands every unacked delivery back to the
	// broker, which delivers it again.
	defer conn.Close()
	if n > 0 {
		c.mu.Lock()
		c.reconnects++
		c.mu.Unlock()
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	go func() {
		if e, ok := <-closed; ok && e != nil {
			select {
			case c.lost <- e:
			default:
			}
		}
	}()
	ch, err := conn.Channel()
	if err != nil {
		return false, false, fmt.Errorf("opening a channel: %w", err)
	}
	if err := ch.Qos(fixPrefetch, 0 /* prefetch size: no byte limit */, false /* global */); err != nil {
		return false, false, fmt.Errorf("setting prefetch %d: %w", fixPrefetch, err)
	}
	const tag = "lab11-fix"
	deliveries, err := ch.Consume(c.queue,
		tag,   // consumer tag: ours, so drain can cancel it
		false, // auto-ack: no, ack after processing
		false, // exclusive
		false, // no-local
		false, // no-wait
		nil,   // args
	)
	if err != nil {
		return false, false, fmt.Errorf("consuming queue %s: %w", c.queue, err)
	}
	drain := c.drain
	for {
		select {
		case <-ctx.Done():
			return false, true, ctx.Err()
		case <-drain:
			// Stop the broker from sending more; what it sent already
			// still arrives, and then deliveries closes.
			if err := ch.Cancel(tag, false /* no-wait */); err != nil {
				return false, true, fmt.Errorf("cancelling the consumer: %w", err)
			}
			drain = nil
		case d, ok := <-deliveries:
			if !ok {
				if drain == nil {
					return true, true, nil
				}
				return false, true, errors.New("the deliveries channel closed: the connection or the channel is gone")
			}
			c.handle(ctx, ch, d)
		}
	}
}

// handle processes one delivery idempotently and acks it on ch, the
// channel it arrived on.
func (c *fixConsumer) handle(ctx context.Context, ch *amqp.Channel, d amqp.Delivery) {
	// Handed over after its channel died: the broker has already put the
	// message back and will deliver it on the next channel. Its tag means
	// nothing anywhere else, so drop it.
	if ch.IsClosed() {
		c.mu.Lock()
		c.dropped++
		c.mu.Unlock()
		return
	}
	if _, err := process(d); err != nil {
		// Every message of this lab decodes; a real service would
		// dead-letter this one (lab 04).
		_ = d.Reject(false /* requeue */)
		return
	}
	// Idempotent: the message ID is the key. A message seen before is
	// acked without doing its work again.
	c.mu.Lock()
	c.calls[d.MessageId]++
	first := c.calls[d.MessageId] == 1
	distinct := len(c.calls)
	c.mu.Unlock()

	// The lab's hook: hold the 100th message, processed and not acked,
	// until the lab has cut the connection.
	if first && distinct == fixHoldAt && !c.held {
		c.held = true
		c.holding <- d.MessageId
		select {
		case <-c.release:
		case <-ctx.Done():
			return
		}
	}

	// Ack on the channel the delivery came on (d.Ack uses that channel).
	// If it is gone, the ack fails; the message comes again.
	if err := d.Ack(false /* multiple */); err != nil {
		c.mu.Lock()
		c.ackRefused++
		c.mu.Unlock()
	}
}

// fixPublisher publishes a steady stream with confirms and its own
// reconnect loop. A message counts as published only once the broker
// confirmed it; anything else is sent again, on the next connection if
// need be, with the same message ID.
type fixPublisher struct {
	url, exchange, name string
	lost                chan *amqp.Error // each session's connection error

	// The publisher goroutine owns these; stats copies them under mu.
	mu             sync.Mutex
	confirmed      []string
	unconfirmed    int // publishes not confirmed when a connection dropped, sent again
	reconnects     int
	afterReconnect int // confirmed since the last reconnect
	retry          []string
	next           int
}

// pubStats is a copy of a publisher's counters.
type pubStats struct {
	confirmed                               []string
	unconfirmed, reconnects, afterReconnect int
}

func (p *fixPublisher) stats() pubStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return pubStats{
		confirmed:   append([]string(nil), p.confirmed...),
		unconfirmed: p.unconfirmed, reconnects: p.reconnects, afterReconnect: p.afterReconnect,
	}
}

// run publishes until stop is closed and every message is confirmed; it
// reconnects with backoff whenever a session breaks.
func (p *fixPublisher) run(ctx context.Context, stop <-chan struct{}) error {
	bo := backoff{next: backoffFirst, longest: backoffLongest}
	for session := 0; ; session++ {
		done, err := p.session(ctx, session, stop)
		if done {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := bo.wait()
		slog.Debug("publisher: session ended; reconnecting", "err", err, "in", wait)
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// flight is a published message waiting for its confirm.
type flight struct {
	id string
	dc *amqp.DeferredConfirmation
}

// session dials, enables confirms and publishes: first what must be sent
// again, then new messages, one per publishEvery, with up to publishWindow
// confirms outstanding.
func (p *fixPublisher) session(ctx context.Context, n int, stop <-chan struct{}) (done bool, err error) {
	conn, err := labkit.DialAMQP(p.url, p.name)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	go func() {
		if e, ok := <-closed; ok && e != nil {
			select {
			case p.lost <- e:
			default:
			}
		}
	}()
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("opening a channel: %w", err)
	}
	if err := ch.Confirm(false /* no-wait */); err != nil {
		return false, fmt.Errorf("enabling publisher confirms: %w", err)
	}
	if n > 0 {
		p.mu.Lock()
		p.reconnects++
		p.afterReconnect = 0
		p.mu.Unlock()
	}

	var inflight []flight
	// On the way out, whatever was not confirmed goes back to be sent
	// again. A confirm may have been lost with the connection although the
	// broker stored the message: then the resend is a duplicate, which the
	// consumer skips by message ID. Duplicates, never loss.
	defer func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		var again []string
		for _, f := range inflight {
			if f.dc.Acked() {
				p.confirm(f.id)
				continue
			}
			again = append(again, f.id)
		}
		p.unconfirmed += len(again)
		p.retry = append(again, p.retry...)
	}()
	// settle waits for the oldest confirm.
	settle := func() error {
		f := inflight[0]
		acked, err := f.dc.WaitContext(ctx)
		if err != nil {
			return err
		}
		if !acked {
			// Nacked by the broker, or the channel closed under it
			// (the library then resolves every pending confirm as a
			// nack): the deferred function sends it again.
			return errors.New("a publish was not confirmed")
		}
		inflight = inflight[1:]
		p.mu.Lock()
		p.confirm(f.id)
		p.mu.Unlock()
		return nil
	}

	tick := time.NewTicker(publishEvery)
	defer tick.Stop()
	stopping := false
	for {
		p.mu.Lock()
		retrying := len(p.retry) > 0
		p.mu.Unlock()
		switch {
		case stopping && !retrying && len(inflight) == 0:
			return true, nil
		case len(inflight) >= publishWindow, stopping && !retrying:
			if err := settle(); err != nil {
				return false, err
			}
			continue
		}

		// Pick the next message: one to send again, else a new one.
		var id string
		if retrying {
			p.mu.Lock()
			id, p.retry = p.retry[0], p.retry[1:]
			p.mu.Unlock()
		} else {
			select {
			case <-ctx.Done():
				return false, ctx.Err()
			case <-stop:
				stopping = true
				continue
			case <-tick.C:
			}
			p.mu.Lock()
			p.next++
			id = fmt.Sprintf("fix-%04d", p.next)
			p.mu.Unlock()
		}
		dc, err := publishBooking(ctx, ch, p.exchange, id)
		if err != nil {
			// Not sent at all: it goes first when we are back.
			p.mu.Lock()
			p.retry = append([]string{id}, p.retry...)
			p.unconfirmed++
			p.mu.Unlock()
			return false, fmt.Errorf("publishing %s: %w", id, err)
		}
		inflight = append(inflight, flight{id, dc})
	}
}

// confirm records a confirmed message; the caller holds p.mu.
func (p *fixPublisher) confirm(id string) {
	p.confirmed = append(p.confirmed, id)
	p.afterReconnect++
}

// publish publishes messages on the lab's channel and waits for each
// confirm.
func (l *lab) publish(ctx context.Context, ids ...string) error {
	for _, id := range ids {
		dc, err := publishBooking(ctx, l.ch, l.exchange, id)
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
	}
	return nil
}

// publishBooking publishes one contracts.EventBooked the way every service
// of the workbench does: routing key and x-event-name header = the event
// name, JSON, persistent, and a message ID that stays the same when the
// message is sent again.
func publishBooking(ctx context.Context, ch *amqp.Channel, exchange, id string) (*amqp.DeferredConfirmation, error) {
	body, err := json.Marshal(contracts.EventBooked{
		ID: id, EventID: "ev-1", UserID: "user-1", Seats: 2,
		Date: time.Date(2026, 11, 27, 20, 0, 0, 0, time.UTC),
	})
	if err != nil {
		return nil, err
	}
	return ch.PublishWithDeferredConfirmWithContext(ctx, exchange, contracts.EventBookedName,
		false, // mandatory: the lab's queue is bound before anything is published
		false, // immediate
		amqp.Publishing{
			Headers:      amqp.Table{"x-event-name": contracts.EventBookedName},
			ContentType:  "application/json",
			DeliveryMode: amqp.Persistent,
			MessageId:    id,
			Timestamp:    time.Now(),
			Body:         body,
		})
}

// process is the work a consumer does before it acks: find the event type
// from the x-event-name header and decode the body into it.
func process(d amqp.Delivery) (contracts.Event, error) {
	name, _ := d.Headers["x-event-name"].(string)
	if name == "" {
		return nil, errors.New("no x-event-name header")
	}
	return contracts.Decode(name, d.Body)
}

// missing lists the IDs of want that have no handler call in calls.
func missing(want []string, calls map[string]int) []string {
	var out []string
	for _, id := range want {
		if calls[id] == 0 {
			out = append(out, id)
		}
	}
	return out
}

// closeConnections closes this run's connections with the given names from
// the broker side, as a broker restart or a network failure would. It finds
// them by their connection_name client property and closes nothing else.
func (l *lab) closeConnections(ctx context.Context, names ...string) error {
	list, err := l.ctl(ctx, "--quiet", "list_connections", "--no-table-headers", "pid", "client_properties")
	if ctx.Err() != nil {
		return fmt.Errorf("listing connections with rabbitmqctl: %w", ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("listing connections with rabbitmqctl: %w; check that -rabbitmqctl reaches the broker at %s", err, labkit.Redact(l.url))
	}
	for _, name := range names {
		pid := ""
		for _, line := range strings.Split(list, "\n") {
			if strings.Contains(line, `{"connection_name","`+name+`"}`) {
				pid, _, _ = strings.Cut(line, "\t")
				break
			}
		}
		if pid == "" {
			return fmt.Errorf("rabbitmqctl list_connections does not show the connection %s; is -rabbitmqctl talking to the broker at %s?", name, labkit.Redact(l.url))
		}
		_, err := l.ctl(ctx, "--quiet", "close_connection", pid, closeReason)
		if ctx.Err() != nil {
			return fmt.Errorf("closing connection %s with rabbitmqctl: %w", name, ctx.Err())
		}
		if err != nil {
			return fmt.Errorf("closing connection %s with rabbitmqctl: %w", name, err)
		}
	}
	return nil
}

// commandCtl turns the -rabbitmqctl command into a ctlFunc, and checks now
// that the program exists, so that a missing rabbitmqctl stops the lab
// before it starts rather than in the middle of part 1.
func commandCtl(command string) (ctlFunc, error) {
	argv := strings.Fields(command)
	if len(argv) == 0 {
		return nil, errors.New("-rabbitmqctl is empty; give the command that runs rabbitmqctl")
	}
	if _, err := exec.LookPath(argv[0]); err != nil {
		return nil, fmt.Errorf("this lab closes its own connections with rabbitmqctl, and %q cannot be run (%v); run the lab where rabbitmqctl reaches the broker, or pass -rabbitmqctl \"docker compose -f docker/compose.yaml exec -T rabbitmq rabbitmqctl\" for the Docker broker", argv[0], err)
	}
	return func(ctx context.Context, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], args...)...)
		text, err := cmd.CombinedOutput()
		if err != nil {
			// rabbitmqctl explains itself over many lines; the first
			// says what went wrong.
			first, _, _ := strings.Cut(strings.TrimSpace(string(text)), "\n")
			return string(text), fmt.Errorf("%s %s: %w: %s", command, strings.Join(args, " "), err, first)
		}
		return string(text), nil
	}, nil
}

// waitClosed waits for an error on a NotifyClose channel.
func waitClosed(ctx context.Context, closed <-chan *amqp.Error) (*amqp.Error, error) {
	select {
	case e, ok := <-closed:
		if !ok || e == nil {
			return nil, errors.New("closed without an error")
		}
		return e, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(waitTimeout):
		return nil, fmt.Errorf("no notification within %v", waitTimeout)
	}
}

// waitState waits until the lifecycle notifications have reported the
// n-th return to the open state.
func waitState(ctx context.Context, states <-chan *amqp.StateChanged, n int) error {
	deadline := time.After(waitTimeout)
	for opened := 0; opened < n; {
		select {
		case s := <-states:
			if s.To == amqp.StateClosed {
				return fmt.Errorf("closed for good: %v", s.Err)
			}
			if s.From == amqp.StateReconnecting && s.To == amqp.StateOpen {
				opened++
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("not open again within %v", waitTimeout)
		}
	}
	return nil
}

// next waits for the next delivery, the end of ctx, or waitTimeout.
func next(ctx context.Context, deliveries <-chan amqp.Delivery) (amqp.Delivery, error) {
	select {
	case d, ok := <-deliveries:
		if !ok {
			return amqp.Delivery{}, errors.New("the deliveries channel closed")
		}
		return d, nil
	case <-ctx.Done():
		return amqp.Delivery{}, fmt.Errorf("waiting for a delivery: %w", ctx.Err())
	case <-time.After(waitTimeout):
		return amqp.Delivery{}, fmt.Errorf("no delivery within %v", waitTimeout)
	}
}

// waitQueue waits until the queue holds ready messages and has consumers
// consumers (or waitTimeout passes), and returns what the broker said last.
// Messages delivered and not yet acked are not in the count.
func (l *lab) waitQueue(ctx context.Context, ready, consumers int) (amqp.Queue, error) {
	deadline := time.Now().Add(waitTimeout)
	for {
		q, err := l.ch.QueueDeclarePassive(l.queue,
			true,  // durable
			false, // auto-delete
			false, // exclusive
			false, // no-wait
			nil,   // args
		)
		if err != nil {
			return q, fmt.Errorf("counting the messages in queue %s: %w", l.queue, err)
		}
		if (q.Messages == ready && q.Consumers == consumers) || time.Now().After(deadline) {
			return q, nil
		}
		if !sleep(ctx, 10*time.Millisecond) {
			return q, fmt.Errorf("waiting for queue %s: %w", l.queue, ctx.Err())
		}
	}
}

// waitFor polls cond until it holds (true), or ctx ends or waitTimeout
// passes (false).
func waitFor(ctx context.Context, cond func() bool) bool {
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) || !sleep(ctx, 5*time.Millisecond) {
			return false
		}
	}
	return true
}

// backoff computes the waits of a reconnect loop: doubling up to longest,
// plus up to a quarter of random jitter.
type backoff struct{ next, longest time.Duration }

func (b *backoff) wait() time.Duration {
	d := b.next
	b.next = min(2*b.next, b.longest)
	return d + rand.N(d/4+1)
}

// sleep waits d; false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// tagged prints a delivery as "id (tag n)".
func tagged(d amqp.Delivery) string { return fmt.Sprintf("%s (tag %d)", d.MessageId, d.DeliveryTag) }

// taggedList prints deliveries as "a (tag 1), b (tag 2)".
func taggedList(ds []amqp.Delivery) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, tagged(d))
	}
	return strings.Join(parts, ", ")
}

// deleteQueue deletes the queue on a channel of its own, so that it works
// even when another channel was closed by an error. The exchange stays.
func deleteQueue(conn *amqp.Connection, queue string) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("opening a channel to clean up: %w", err)
	}
	defer ch.Close()
	if _, err := ch.QueueDelete(queue,
		false, // if-unused
		false, // if-empty
		false, // no-wait
	); err != nil {
		return fmt.Errorf("deleting queue %s: %w", queue, err)
	}
	return nil
}
