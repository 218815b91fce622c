// Command 13-reconnect shows what a consumer needs when the broker closes
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
// lab13.events, not the capstone's "events" (whose durable BookingService
// queue would collect the lab's made-up bookings). It finishes by itself in
// about ten seconds and deletes the queue and the exchange unless -keep is given.
// Ctrl-C stops it cleanly at any point.
//
// Usage:
//
//	go run ./labs/13-reconnect [-url amqp://guest:guest@127.0.0.1:5672/] [-exchange lab13.events] [-queue lab13.reconnect] [-conn-name myevents-13-reconnect] [-rabbitmqctl rabbitmqctl] [-keep]
//
// rabbitmqctl must reach the broker; with the Docker broker, pass
// -rabbitmqctl "docker compose -f docker/compose.yaml exec -T rabbitmq rabbitmqctl".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
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

// closeNoticeWait bounds how long a session that failed waits for the
// broker's close notice before closing its connection itself (endSession).
const closeNoticeWait = 2 * time.Second

// closeReason is what the broker tells a connection the lab closes.
const closeReason = "closed by lab 13"

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
	fs := flag.NewFlagSet("13-reconnect", flag.ContinueOnError)
	amqpURL := fs.String("url", "", "AMQP URL of the broker (default $AMQP_URL, else "+defaultURL+")")
	exchange := fs.String("exchange", "lab13.events", "name of the durable topic exchange the lab publishes to (deleted at the end unless -keep, and only if no other queue is bound to it)")
	queue := fs.String("queue", "lab13.reconnect", "name of the queue the three parts consume (deleted at the end unless -keep)")
	keep := fs.Bool("keep", false, "keep the queue and the exchange at the end instead of deleting them")
	connName := fs.String("conn-name", "myevents-13-reconnect", "prefix of the connection names the broker shows; the lab adds a per-run token and the role")
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
	// Check the names before dialing (labkit.CheckNames says why).
	if err := labkit.CheckNames(*exchange, *queue, "lab13.events"); err != nil {
		return err
	}
	if *connName == "" {
		return errors.New("-conn-name must not be empty: it begins the names under which the broker lists the lab's connections, and the lab finds them to close")
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
	return l.run(ctx, *keep)
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

func (l *lab) run(ctx context.Context, keep bool) error {
	// Connect. This connection declares, publishes for parts 1 and 2, and
	// counts; the lab never cuts it.
	conn, err := labkit.DialAMQPContext(ctx, l.url, l.name("lab"))
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
	// Whatever happens below, delete the queue and the exchange when we
	// leave, unless -keep.
	deleted := keep
	defer func() {
		if !deleted {
			_, _ = deleteTopology(conn, l.queue, l.exchange)
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
	if keep {
		fmt.Fprintf(l.out, "kept queue %q and exchange %q (-keep): a run without -keep deletes them\n", l.queue, l.exchange)
		return nil
	}
	deleted = true
	switch inUse, err := deleteTopology(conn, l.queue, l.exchange); {
	case err != nil:
		return err
	case inUse:
		fmt.Fprintf(l.out, "deleted queue %q; kept exchange %q: queues are bound to it, so the if-unused delete was refused\n", l.queue, l.exchange)
	default:
		fmt.Fprintf(l.out, "deleted queue %q and exchange %q\n", l.queue, l.exchange)
	}
	return nil
}

// partNaive is the original chapter's consumer: one connection, one
// channel, one loop over the deliveries. It acks after processing, as lab
// 04 taught, and still goes deaf for good when its connection dies.
func (l *lab) partNaive(ctx context.Context) error {
	name := l.name("naive")
	conn, err := labkit.DialAMQPContext(ctx, l.url, name)
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
	deliveries, err := consume(ch, l.queue, "")
	if err != nil {
		return err
	}

	// The consume loop: when the connection dies, the library closes
	// deliveries, the range ends, and with it the consumer. Nothing here
	// will ever dial again.
	processed := make(chan string, 8)
	loopEnded := make(chan struct{}, 1)
	go func() {
		defer func() { loopEnded <- struct{}{} }()
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
		id, err := await(ctx, processed, fmt.Sprintf("waiting for the naive consumer to process %v (it has %v)", before, got))
		if err != nil {
			return err
		}
		got = append(got, id)
	}
	sort.Strings(got)
	fmt.Fprintf(l.out, "  the consumer processed and acked %s\n", strings.Join(got, ", "))

	// The outage: the broker closes the consumer's connection.
	if err := closeConnections(ctx, l.ctl, l.url, name); err != nil {
		return err
	}
	reason, err := await(ctx, closed, "waiting for the naive consumer's connection to close")
	if err != nil {
		return err
	}
	fmt.Fprintf(l.out, "  the broker closed the consumer's connection: %s\n", reason.Reason)
	if _, err := await(ctx, loopEnded, "waiting for the naive consume loop to end after its connection closed"); err != nil {
		return err
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
	deliveries, err := consume(ch, l.queue, "")
	if err != nil {
		return err
	}

	// The consumer's work: process, then ack with the delivery's tag.
	calls := map[string]int{}
	handle := func(d amqp.Delivery) error {
		if _, err := process(d); err != nil {
			return fmt.Errorf("processing %s: %w", d.MessageId, err)
		}
		calls[d.MessageId]++
		if err := d.Ack(false /* multiple */); err != nil {
			return fmt.Errorf("acking %s: %w", d.MessageId, err)
		}
		return nil
	}
	// take waits for the whole prefetch window to arrive.
	take := func(when string) ([]amqp.Delivery, error) {
		var ds []amqp.Delivery
		for range recoveryPrefetch {
			d, err := await(ctx, deliveries, when+": waiting for a delivery")
			if err != nil {
				return nil, err
			}
			ds = append(ds, d)
		}
		return ds, nil
	}

	// Before the outage: the whole prefetch window arrives; the consumer
	// processes and acks the first, and holds the other three.
	held, err := take("before the outage")
	if err != nil {
		return err
	}
	first := held[0]
	held = held[1:]
	if err := handle(first); err != nil {
		return err
	}
	heldTags := map[string]uint64{}
	for _, d := range held {
		heldTags[d.MessageId] = d.DeliveryTag
	}
	fmt.Fprintf(l.out, "  before the outage: processed and acked %s; %s wait in the consumer\n", tagged(first), taggedList(held))

	// The outage. The broker requeues the three unacked messages into
	// their old places at the head of the queue.
	if err := closeConnections(ctx, l.ctl, l.url, name); err != nil {
		return err
	}
	reason, err := await(ctx, chClosed, "waiting for the channel to learn of the outage")
	if err != nil {
		return err
	}
	fmt.Fprintf(l.out, "  the broker closed the connection: %s\n", reason.Reason)
	if err := l.publish(ctx, "rec-5"); err != nil {
		return err
	}
	fmt.Fprintln(l.out, "  published rec-5 during the outage")

	// Recovery: wait until the library says the connection is open again,
	// then read what the same Go channel delivers now.
	if err := waitState(ctx, connStates, 1, "waiting for recovery"); err != nil {
		return err
	}
	again, err := take("after recovery")
	if err != nil {
		return err
	}
	newTags := map[string]uint64{}
	byTag := map[uint64]string{}
	for _, d := range again {
		newTags[d.MessageId] = d.DeliveryTag
		byTag[d.DeliveryTag] = d.MessageId
	}
	fmt.Fprintf(l.out, "  recovery reconnected and consumed again; the same Go channel delivered %s\n", taggedList(again))

	// The trap: the consumer finishes the deliveries it held and acks
	// each with the tag it came with. A delivery tag is a number the
	// broker counts per channel, from 1; the recovered channel is a new
	// channel on the broker, so these numbers now name other deliveries.
	staleAcks := 0
	for _, d := range held {
		if err := handle(d); err != nil {
			return err
		}
		staleAcks++
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
	redelivered := again[:2]
	for _, d := range redelivered {
		if err := handle(d); err != nil {
			return err
		}
	}
	var chErr *amqp.Error
	if staleAcks == 0 {
		// Only a stale ack uses up a tag of the new channel: without one
		// (the docs' "Make part 2 safe by hand"), every ack is right.
		fmt.Fprintf(l.out, "  processed and acked the redelivered %s: no stale tag, so the broker refused no ack\n", taggedList(redelivered))
	} else {
		if chErr, err = await(ctx, chClosed, "waiting for the broker to refuse the ack of "+again[1].MessageId); err != nil {
			return err
		}
		fmt.Fprintf(l.out, "  processed and acked the redelivered %s and %s: the broker closed the channel: %s (%d)\n",
			tagged(again[0]), tagged(again[1]), chErr.Reason, chErr.Code)
		// Recovery reopens the channel at once: tags start at 1 again, and
		// every delivery the consumer still holds carries a stale one. This
		// is the livelock: ack, channel closed, reopened, ack, closed...
		if err := waitState(ctx, chStates, 2, "waiting for the channel to reopen"); err != nil {
			return err
		}
		fmt.Fprintln(l.out, "  recovery reopened the channel, tags from 1 again; the lab stops the consumer here")
	}
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
// reconnect loop (client.go; the consumer's loop and its deliver are this
// lab's exercise: solution.go, the template is exercise.go), cuts the consumer's connection while it holds
// a processed but unacked delivery, then the publisher's while it
// publishes, and checks that every confirmed message was processed.
func (l *lab) partFix(ctx context.Context) error {
	// A loop that fails cancels ctx with its error as the cause, so that
	// every wait below ends at once and explains itself with that error.
	ctx, cancel := context.WithCancelCause(ctx)
	app := &bookings{holdAt: fixHoldAt, holding: make(chan string, 1), release: make(chan struct{}), calls: map[string]int{}}
	cons := &consumer{
		url: l.url, queue: l.queue, name: l.name("consumer"), prefetch: fixPrefetch,
		handle: app.handle,
		drain:  make(chan struct{}),
		lost:   make(chan *amqp.Error, 4),
	}
	pub := &publisher{
		url: l.url, exchange: l.exchange, name: l.name("publisher"),
		lost: make(chan *amqp.Error, 4),
	}
	stopPublishing := make(chan struct{})
	consDone, pubDone := make(chan error, 1), make(chan error, 1)
	var loops sync.WaitGroup
	loops.Go(func() {
		err := cons.run(ctx)
		if err != nil {
			cancel(fmt.Errorf("the consumer stopped: %w", err))
		}
		consDone <- err
	})
	loops.Go(func() {
		err := pub.run(ctx, stopPublishing)
		if err != nil {
			cancel(fmt.Errorf("the publisher stopped: %w", err))
		}
		pubDone <- err
	})
	// On every way out, stop both and wait for them: they close their
	// connections, and the broker requeues whatever was not acked.
	defer func() {
		cancel(nil)
		loops.Wait()
	}()

	// Messages flow until the consumer holds its 100th message,
	// processed and not yet acked.
	held, err := await(ctx, app.holding, "waiting for the consumer to hold a message")
	if err != nil {
		return err
	}
	l.observe(stepFixHolding, report{held: held})

	// Cut the consumer's connection while it holds that message.
	if err := closeConnections(ctx, l.ctl, l.url, cons.name); err != nil {
		return err
	}
	reason, err := await(ctx, cons.lost, "waiting for the consumer to learn of the outage")
	if err != nil {
		return err
	}
	fmt.Fprintf(l.out, "  the consumer held %s, processed and not yet acked, when the broker closed its connection: %s\n", held, reason.Reason)
	close(app.release)
	if err := waitUntil(ctx, "waiting for the consumer's ack of "+held, func() bool { return cons.stats().ackRefused >= 1 }); err != nil {
		return err
	}
	fmt.Fprintf(l.out, "  its ack of %s failed, as it must: that channel is gone, and the broker has put the message back\n", held)

	// Cut the publisher's connection while it publishes.
	if err := closeConnections(ctx, l.ctl, l.url, pub.name); err != nil {
		return err
	}
	if reason, err = await(ctx, pub.lost, "waiting for the publisher to learn of the outage"); err != nil {
		return err
	}
	fmt.Fprintf(l.out, "  the broker closed the publisher's connection: %s\n", reason.Reason)
	if err := waitUntil(ctx, "waiting for the publisher to publish again", func() bool { return pub.stats().afterReconnect >= fixAfterRecovery }); err != nil {
		return err
	}

	// Stop publishing; the publisher returns once every message it ever
	// published is confirmed.
	close(stopPublishing)
	pubErr, err := await(ctx, pubDone, "waiting for the publisher's last confirms")
	if err != nil {
		return err
	}
	if pubErr != nil {
		return fmt.Errorf("the publisher: %w", pubErr)
	}
	ps := pub.stats()

	// Let the consumer work through the queue: every confirmed message
	// processed, and nothing ready any more. Then it cancels its consumer,
	// finishes the deliveries already on their way, and returns.
	if err := waitUntil(ctx, "waiting for the consumer to process every message", func() bool { return len(missing(ps.confirmed, app.snapshot())) == 0 }); err != nil {
		return err
	}
	if _, err := l.waitQueue(ctx, 0, 1); err != nil {
		return err
	}
	close(cons.drain)
	consErr, err := await(ctx, consDone, "waiting for the consumer to finish")
	if err != nil {
		return err
	}
	if consErr != nil {
		return fmt.Errorf("the consumer: %w", consErr)
	}
	cs, calls := cons.stats(), app.snapshot()

	// The summary: the broker's count and the consumer's record.
	q, err := l.waitQueue(ctx, 0, 0)
	if err != nil {
		return err
	}
	handlerCalls := 0
	for _, n := range calls {
		handlerCalls += n
	}
	fmt.Fprintf(l.out, "  reconnects: consumer %d, publisher %d\n", cs.reconnects, ps.reconnects)
	fmt.Fprintf(l.out, "  published and confirmed: %d messages; not confirmed at the outage and sent again: %d\n", len(ps.confirmed), ps.unconfirmed)
	fmt.Fprintf(l.out, "  processed: %d distinct messages, %d missing, in %d handler calls; duplicates skipped by message ID: %d\n",
		len(calls), len(missing(ps.confirmed, calls)), handlerCalls, handlerCalls-len(calls))
	fmt.Fprintf(l.out, "  left in the queue: %d messages\n", q.Messages)
	l.observe(stepFixDone, report{
		published: ps.confirmed, calls: calls, held: held,
		reconnects: [2]int{cs.reconnects, ps.reconnects}, unconfirmed: ps.unconfirmed, ackRefused: cs.ackRefused,
	})
	return nil
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

// closeConnections closes the connections with the given names from the
// broker side, as a broker restart or a network failure would, with ctl
// (rabbitmqctl for the broker at url). It finds them by their
// connection_name client property and closes nothing else.
func closeConnections(ctx context.Context, ctl ctlFunc, url string, names ...string) error {
	list, err := ctl(ctx, "--quiet", "list_connections", "--no-table-headers", "pid", "client_properties")
	if ctx.Err() != nil {
		return fmt.Errorf("listing connections with rabbitmqctl: %w", ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("listing connections with rabbitmqctl: %w; check that -rabbitmqctl reaches the broker at %s", err, labkit.Redact(url))
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
			return fmt.Errorf("rabbitmqctl list_connections does not show the connection %s; is -rabbitmqctl talking to the broker at %s?", name, labkit.Redact(url))
		}
		_, err := ctl(ctx, "--quiet", "close_connection", pid, closeReason)
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
		// On Ctrl-C the command is killed, but rabbitmqctl is a script
		// whose Erlang process keeps the output open: stop waiting for
		// it soon after. That process finishes on its own a few seconds
		// later. Killing the command's whole process group would not stop
		// it either: run as root, Debian's rabbitmqctl starts it through
		// su -c, which puts it in a session of its own.
		cmd.WaitDelay = 100 * time.Millisecond
		text, err := cmd.CombinedOutput()
		if errors.Is(err, exec.ErrWaitDelay) && ctx.Err() == nil {
			// It succeeded; only a process it left held the output open
			// a little longer.
			err = nil
		}
		if err != nil {
			// rabbitmqctl explains itself over many lines; the first
			// says what went wrong.
			first, _, _ := strings.Cut(strings.TrimSpace(string(text)), "\n")
			return string(text), fmt.Errorf("%s %s: %w: %s", command, strings.Join(args, " "), err, first)
		}
		return string(text), nil
	}, nil
}

// await waits for the next value on ch, the end of ctx, or waitTimeout,
// whichever comes first; what says in the error what it waited for, and
// why ctx ended (context.Canceled on Ctrl-C). A channel that closes
// instead of sending is an error too.
func await[T any](ctx context.Context, ch <-chan T, what string) (T, error) {
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	var zero T
	select {
	case v, ok := <-ch:
		if !ok {
			return zero, fmt.Errorf("%s: the channel closed", what)
		}
		return v, nil
	case <-ctx.Done():
		return zero, fmt.Errorf("%s: %w", what, context.Cause(ctx))
	case <-timeout.C:
		return zero, fmt.Errorf("%s: not within %v", what, waitTimeout)
	}
}

// waitUntil polls cond every 5 ms until it holds, and fails as await does.
func waitUntil(ctx context.Context, what string, cond func() bool) error {
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %v", what, waitTimeout)
		}
		if !sleep(ctx, 5*time.Millisecond) {
			return fmt.Errorf("%s: %w", what, context.Cause(ctx))
		}
	}
	return nil
}

// waitState waits until the lifecycle notifications have reported the
// n-th return to the open state.
func waitState(ctx context.Context, states <-chan *amqp.StateChanged, n int, what string) error {
	for opened := 0; opened < n; {
		s, err := await(ctx, states, what)
		if err != nil {
			return err
		}
		if s.To == amqp.StateClosed {
			return fmt.Errorf("%s: closed for good: %v", what, s.Err)
		}
		if s.From == amqp.StateReconnecting && s.To == amqp.StateOpen {
			opened++
		}
	}
	return nil
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
			return q, fmt.Errorf("waiting for queue %s: %w", l.queue, context.Cause(ctx))
		}
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
