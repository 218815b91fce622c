package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"example.com/myevents/capstone/internal/backoff"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/internal/listenrules"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Listener consumes one service's queue; see the package documentation.
type Listener struct {
	url   string
	queue string
	names []string
	cfg   config
	log   *slog.Logger

	life listenrules.Lifecycle // one Listen at a time, none after Close

	mu      sync.Mutex
	conn    *amqp.Connection // nil or broken until the next (re)connect
	stalled error            // why the last consume session ended, until one starts

	topologyErr error       // why the last declare while consuming failed (checkTopology)
	handlerDown error       // the handler's msgqueue.Unavailable while a delivery is held (holdWhileDown)
	checking    atomic.Bool // a checkTopology runs

	handled, acked, ackFailed, retried, deadLettered, skipped, reconnects, batches atomic.Int64
}

var _ msgqueue.BatchListener = (*Listener)(nil)

// DeadLetterQueue returns the name of the dead-letter queue of queue.
func DeadLetterQueue(queue string) string { return queue + ".dlq" }

// DeadLetterExchange returns the name of the dead-letter exchange of queue.
func DeadLetterExchange(queue string) string { return queue + ".dlx" }

// NewListener connects to the broker at url and declares the topology of
// the service whose queue is named queue: the exchange, the queue bound to
// it once per name in names, and the dead-letter exchange and queue. From
// then on the queue keeps every event of those names until Listen takes it.
func NewListener(ctx context.Context, url, queue string, names []string, opts ...Option) (*Listener, error) {
	if queue == "" {
		return nil, errors.New("building the listener: the queue name is empty")
	}
	names, err := listenrules.Built(fmt.Sprintf("queue %q", queue), names)
	if err != nil {
		return nil, err
	}
	cfg := newConfig(opts)
	l := &Listener{
		url:   url,
		queue: queue,
		names: names,
		cfg:   cfg,
		log:   cfg.log.With("component", "listener", "queue", queue),
	}
	conn, err := l.connect(ctx)
	if err != nil {
		return nil, err
	}
	l.conn = conn
	return l, nil
}

// connect dials and declares the topology. It runs at construction and on
// every reconnect (and ListenBatch declares it again after a consume
// session ended on a live connection), so a queue deleted while the
// service ran comes back.
func (l *Listener) connect(ctx context.Context) (*amqp.Connection, error) {
	conn, err := dial(ctx, l.url, l.cfg, "myevents listener "+l.queue)
	if err != nil {
		return nil, err
	}
	if err := l.declareOn(conn); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return conn, nil
}

// declare declares the exchange, the dead-letter exchange and queue, the
// service's queue and its bindings.
func (l *Listener) declare(ch *amqp.Channel) error {
	if err := declareExchange(ch, "exchange", l.cfg.exchange, amqp.ExchangeTopic); err != nil {
		return err
	}
	dlx, dlq := DeadLetterExchange(l.queue), DeadLetterQueue(l.queue)
	if err := declareExchange(ch, "dead-letter exchange", dlx, amqp.ExchangeFanout); err != nil {
		return err
	}
	_, err := ch.QueueDeclare(dlq,
		true,  // durable
		false, // auto-delete
		false, // exclusive
		false, // no-wait
		amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum})
	if err != nil {
		return fmt.Errorf("declaring dead-letter queue %q: %w", dlq, err)
	}
	if err := ch.QueueBind(dlq, "", dlx, false /* no-wait */, nil /* args */); err != nil {
		return fmt.Errorf("binding dead-letter queue %q: %w", dlq, err)
	}
	// A quorum queue counts deliveries and dead-letters a message returned
	// more than x-delivery-limit times: with the limit one below ours, the
	// broker dead-letters a message that crashed its consumer on its last
	// allowed delivery. At-least-once dead-lettering keeps a message in
	// this queue until the dead-letter queue confirmed it.
	_, err = ch.QueueDeclare(l.queue,
		true,  // durable
		false, // auto-delete
		false, // exclusive
		false, // no-wait
		amqp.Table{
			amqp.QueueTypeArg:        amqp.QueueTypeQuorum,
			"x-dead-letter-exchange": dlx,
			"x-delivery-limit":       int64(l.cfg.deliveryLimit - 1),
			"x-dead-letter-strategy": "at-least-once",
			amqp.QueueOverflowArg:    amqp.QueueOverflowRejectPublish,
		})
	if err != nil {
		var amqpErr *amqp.Error
		if errors.As(err, &amqpErr) && amqpErr.Code == amqp.PreconditionFailed {
			return fmt.Errorf("declaring queue %q: it exists with other arguments (an older delivery limit or a classic queue); delete it or keep its settings: %w", l.queue, err)
		}
		return fmt.Errorf("declaring queue %q: %w", l.queue, err)
	}
	for _, name := range l.names {
		if err := ch.QueueBind(l.queue, name, l.cfg.exchange, false /* no-wait */, nil /* args */); err != nil {
			return fmt.Errorf("binding queue %q to %q for %s: %w", l.queue, l.cfg.exchange, name, err)
		}
	}
	return nil
}

// Listen consumes the queue and calls h for each event whose name is in
// names (all the listener's names when empty) until ctx ends or Close is
// called; then it returns nil after the running handler finished. Broken
// connections are re-established with backoff. See the package
// documentation for what each handler result does.
func (l *Listener) Listen(ctx context.Context, h msgqueue.Handler, names ...string) error {
	return l.ListenBatch(ctx, h, nil, names...)
}

// ListenBatch is Listen that hands the deliveries waiting together (a
// window, up to the prefetch, in stretches of one event name) to hb, one
// call a stretch, and acknowledges each stretch with one multiple-ack once
// hb returned nil; see window.go. With hb nil it is Listen.
func (l *Listener) ListenBatch(ctx context.Context, h msgqueue.Handler, hb msgqueue.BatchHandler, names ...string) error {
	filter, err := listenrules.Filter(l.names, names)
	if err != nil {
		return fmt.Errorf("listening on queue %q: %w", l.queue, err)
	}
	// stop ends when ctx ends or Close is called: it ends dials, waits
	// and the consume loop; handlers get ctx.
	stop, end, err := l.life.Begin(ctx, fmt.Sprintf("queue %q", l.queue))
	if err != nil {
		return err
	}
	defer end()

	failures := 0
	for {
		conn, err := l.connection(stop)
		if err == nil && failures > 0 {
			// The session before ended on a live connection, maybe
			// because the queue was deleted (the broker cancels its
			// consumers) or the channel refused something: declare the
			// topology again, as a reconnect does.
			err = l.declareOn(conn)
		}
		if err == nil {
			var started bool
			started, err = l.consume(ctx, stop, conn, h, hb, filter)
			if started {
				failures = 0
			}
		}
		if stop.Err() != nil || errors.Is(err, msgqueue.ErrClosed) {
			return nil
		}
		l.setStalled(err)
		failures++
		wait := l.cfg.reconnect.Delay(failures)
		l.log.Warn("consuming interrupted; reconnecting", "err", err, "retry_in", wait)
		if !backoff.Sleep(stop, wait) {
			return nil
		}
	}
}

// declareOn declares the topology on a channel of its own on conn.
func (l *Listener) declareOn(conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("opening a channel to declare the topology of queue %q: %w", l.queue, err)
	}
	defer ch.Close()
	if err := l.declare(ch); err != nil {
		return fmt.Errorf("declaring the topology of queue %q: %w", l.queue, err)
	}
	return nil
}

// checkTopology declares the topology again while the listener consumes,
// and keeps the error, if any, for Health.
func (l *Listener) checkTopology(conn *amqp.Connection) {
	defer l.checking.Store(false)
	if conn.IsClosed() {
		return // the session ends, and the next one declares it
	}
	err := l.declareOn(conn)
	if err != nil {
		l.log.Warn("declaring the topology again failed; retrying", "err", err, "retry_in", l.cfg.topologyCheck)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.topologyErr = err
}

// setStalled notes why the last consume session ended (nil: a new one
// has started, on a topology declared just before it).
func (l *Listener) setStalled(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stalled = err
	if err == nil {
		l.topologyErr = nil
	}
}

// connection returns the current connection, or dials a new one (and
// declares the topology again) if it broke.
func (l *Listener) connection(ctx context.Context) (*amqp.Connection, error) {
	l.mu.Lock()
	conn := l.conn
	l.mu.Unlock()
	if conn != nil && !conn.IsClosed() {
		return conn, nil
	}
	conn, err := l.connect(ctx)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.life.Closed() {
		_ = conn.Close()
		return nil, msgqueue.ErrClosed
	}
	l.conn = conn
	l.reconnects.Add(1)
	l.log.Info("reconnected")
	return conn, nil
}

// errDeliveriesClosed ends a session whose deliveries stopped.
var errDeliveriesClosed = errors.New("the delivery channel closed (connection or channel lost, or consumer cancelled)")

// consume opens a fresh channel on conn and handles its deliveries until
// stop ends (nil) or the channel breaks (an error); handlers get ctx.
// started reports whether the consumer was registered.
func (l *Listener) consume(ctx, stop context.Context, conn *amqp.Connection, h msgqueue.Handler, hb msgqueue.BatchHandler, filter map[string]bool) (started bool, err error) {
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("opening a channel: %w", err)
	}
	// Closing the channel returns the unacknowledged deliveries to the
	// queue; the broker delivers them again.
	defer ch.Close()
	if err := ch.Qos(l.cfg.prefetch,
		0,     // prefetch size: no byte limit
		false, // global: this channel only
	); err != nil {
		return false, fmt.Errorf("setting the prefetch count: %w", err)
	}
	deliveries, err := ch.Consume(l.queue,
		"",    // consumer tag: let the library pick a unique one
		false, // auto-ack: acknowledge only after the handler returned nil
		false, // exclusive: other instances of the service may share the queue
		false, // no-local: not supported by RabbitMQ
		false, // no-wait
		nil,   // args
	)
	if err != nil {
		return false, fmt.Errorf("consuming queue %q: %w", l.queue, err)
	}
	l.setStalled(nil)
	s := &session{l: l, ch: ch, stop: stop, dlq: newDeadLetterer(conn, l), retries: newRetries(), h: h, hb: hb, filter: filter}
	// Returning closes the channel: the messages waiting out a retry
	// backoff go back to the queue with the others. The deliveries handled
	// are acknowledged first (if the channel still works).
	defer s.end()
	defer s.flushAcks()
	check := time.NewTicker(l.cfg.topologyCheck)
	defer check.Stop()
	for {
		// With deliveries handled but not acknowledged: take the next one
		// if it is there already, else acknowledge them together.
		if any, full := s.noted(); any && !full {
			select {
			case d, ok := <-deliveries:
				if !ok || !s.take(ctx, d, deliveries) {
					return true, errDeliveriesClosed
				}
				continue
			default:
			}
		}
		s.flushAcks()
		select {
		case <-stop.Done():
			return true, nil
		case d := <-s.retries.due:
			s.requeue(d)
		case <-check.C:
			// A deleted exchange took the queue's bindings with it, and
			// nothing tells a consumer: declare everything again, on the
			// side (channel calls have no deadline: a silent broker must
			// not hold up the deliveries or the stop).
			if l.checking.CompareAndSwap(false, true) {
				go l.checkTopology(conn)
			}
		case d, ok := <-deliveries:
			if !ok || !s.take(ctx, d, deliveries) {
				return true, errDeliveriesClosed
			}
		}
	}
}

// ListenerStats counts what a listener did.
type ListenerStats struct {
	Handled      int64 // handler calls
	Acked        int64 // deliveries acknowledged
	AckFailed    int64 // acknowledgements refused because their channel was gone
	Retried      int64 // deliveries returned to the queue after a handler error
	DeadLettered int64 // deliveries rejected to the dead-letter queue
	Skipped      int64 // deliveries acknowledged without a handler call (name filter)
	Reconnects   int64 // connections re-established after one broke
	Batches      int64 // windows a BatchHandler applied in one call (ListenBatch)
}

// Stats returns the listener's counters.
func (l *Listener) Stats() ListenerStats {
	return ListenerStats{
		Handled: l.handled.Load(), Acked: l.acked.Load(), AckFailed: l.ackFailed.Load(),
		Retried: l.retried.Load(), DeadLettered: l.deadLettered.Load(), Skipped: l.skipped.Load(),
		Reconnects: l.reconnects.Load(), Batches: l.batches.Load(),
	}
}

// Connected reports whether the listener has a live connection.
func (l *Listener) Connected() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conn != nil && !l.conn.IsClosed()
}

// Health reports a listener without a live connection (it is
// reconnecting), one whose last consume session ended and no new one has
// started (it cannot consume its queue: deleted and not declared again
// yet, or declared by someone else with other arguments), and one whose
// last declare of its topology while consuming failed (its bindings may
// be gone), and one whose handler cannot apply events (it answered
// msgqueue.Unavailable and the listener holds its delivery), with the
// reason.
func (l *Listener) Health(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.conn == nil || l.conn.IsClosed():
		return errors.New("the listener is not connected to RabbitMQ (reconnecting)")
	case l.stalled != nil:
		return fmt.Errorf("the listener cannot consume queue %q (retrying): %w", l.queue, l.stalled)
	case l.topologyErr != nil:
		return fmt.Errorf("the listener consumes queue %q but cannot declare its bindings (retrying): %w", l.queue, l.topologyErr)
	case l.handlerDown != nil:
		return fmt.Errorf("the handler of queue %q cannot apply events (retrying): %w", l.queue, l.handlerDown)
	}
	return nil
}

// setHandlerDown notes the handler's msgqueue.Unavailable while a
// delivery is held, or nil once it answered otherwise.
func (l *Listener) setHandlerDown(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.handlerDown = err
}

// Close stops Listen, waits for the running handler (its message is then
// acknowledged or returned as usual) and closes the connection.
func (l *Listener) Close() error {
	if !l.life.Close() {
		return nil
	}
	l.life.Wait()
	l.mu.Lock()
	conn := l.conn
	l.conn = nil
	l.mu.Unlock()
	if conn != nil && !conn.IsClosed() {
		if err := conn.Close(); err != nil && !errors.Is(err, amqp.ErrClosed) {
			return fmt.Errorf("closing the listener's connection: %w", err)
		}
	}
	return nil
}
