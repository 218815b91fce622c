// Package memory is an in-process msgqueue transport for the services' unit
// tests: no broker, same delivery rules as the AMQP transport.
//
// A Bus holds named queues, one per service, each bound to the event names
// its listener was built for. Emit encodes the event to JSON and appends it
// to every queue bound for its name (an event no queue is bound for is an
// error wrapping msgqueue.ErrUnroutable, as with AMQP's mandatory flag), so
// what a handler receives went through the same encoding as on the wire.
//
// Delivery rules, as in the AMQP transport:
//   - a handler that returns nil acknowledges the event;
//   - a handler error puts the event back at the head of its queue and it is
//     delivered again after a backoff that doubles with each delivery
//     (WithRetryBackoff); a handler error on the last delivery the limit
//     allows (WithDeliveryLimit, msgqueue.DefaultDeliveryLimit) dead-letters
//     it;
//   - msgqueue.Permanent errors, malformed bodies and unknown or missing
//     event names are dead-lettered at once; read them with DeadLetters.
//
// Usage:
//
//	bus := memory.New()
//	l, _ := bus.Listener("bookingservice", []string{contracts.EventCreatedName})
//	go l.Listen(ctx, handle)
//	_ = bus.Emitter().Emit(ctx, &contracts.EventCreated{...})
package memory

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"example.com/myevents/capstone/internal/backoff"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/internal/listenrules"
	"example.com/myevents/contracts"
)

// The default retry backoff: short, the bus is for unit tests.
const (
	DefaultRetryFirst   = 20 * time.Millisecond
	DefaultRetryLongest = 200 * time.Millisecond
)

// Option configures a Bus.
type Option func(*Bus)

// WithDeliveryLimit sets how often an event is delivered at most: a
// handler error on the nth delivery dead-letters it (default
// msgqueue.DefaultDeliveryLimit).
func WithDeliveryLimit(n int) Option {
	return func(b *Bus) {
		if n > 0 {
			b.limit = n
		}
	}
}

// WithRetryBackoff sets how long a listener waits after a handler error
// before it delivers the next message: first after the first failure,
// doubling with each delivery up to longest (default 20ms up to 200ms).
func WithRetryBackoff(first, longest time.Duration) Option {
	return func(b *Bus) { b.backoff = backoff.Policy{First: first, Longest: longest} }
}

// WithLogger sets the logger for dead-lettered and retried messages.
func WithLogger(l *slog.Logger) Option { return func(b *Bus) { b.log = l } }

// Bus is an in-memory broker. The zero value is not usable; call New.
type Bus struct {
	limit   int
	backoff backoff.Policy
	log     *slog.Logger

	mu      sync.Mutex
	queues  map[string]*queue
	emitted []Message
}

// Message is one message as the bus stores it.
type Message struct {
	ID   string // message ID, unique per Emit
	Name string // event name (empty when an injected message has none)
	Body []byte // the event's JSON
}

// DeadLetter is a message a listener gave up on, and why.
type DeadLetter struct {
	Message
	Reason string
}

// queue is one service's queue.
type queue struct {
	names  map[string]bool
	ready  []delivery
	dead   []DeadLetter
	notify chan struct{} // signalled when a message is added
}

// delivery is a queued message and how often it was delivered.
type delivery struct {
	Message
	count int
}

// New returns an empty bus.
func New(opts ...Option) *Bus {
	b := &Bus{
		limit:   msgqueue.DefaultDeliveryLimit,
		backoff: backoff.Policy{First: DefaultRetryFirst, Longest: DefaultRetryLongest},
		log:     slog.New(slog.DiscardHandler),
		queues:  map[string]*queue{},
	}
	for _, o := range opts {
		o(b)
	}
	return b
}

// Emitted returns every message an Emit put on the bus, in order.
func (b *Bus) Emitted() []Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Message(nil), b.emitted...)
}

// DeadLetters returns the dead letters of the named queue.
func (b *Bus) DeadLetters(queueName string) []DeadLetter {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queues[queueName]
	if q == nil {
		return nil
	}
	return append([]DeadLetter(nil), q.dead...)
}

// Inject puts a raw message at the end of the named queue, whatever its name
// and body: tests use it for poison messages.
func (b *Bus) Inject(queueName string, m Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queues[queueName]
	if q == nil {
		return fmt.Errorf("injecting into queue %q: %w", queueName, ErrNoQueue)
	}
	q.push(m)
	return nil
}

// declare creates the named queue if needed and binds it to names.
func (b *Bus) declare(queueName string, names []string) *queue {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queues[queueName]
	if q == nil {
		q = &queue{names: map[string]bool{}, notify: make(chan struct{}, 1)}
		b.queues[queueName] = q
	}
	for _, n := range names {
		q.names[n] = true
	}
	return q
}

// push appends m and wakes a listener. The caller holds b.mu.
func (q *queue) push(m Message) {
	q.ready = append(q.ready, delivery{Message: m})
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// ErrNoQueue is returned by Inject for a queue no listener declared.
var ErrNoQueue = errors.New("memory: no such queue")

// Emitter returns an emitter for the bus.
func (b *Bus) Emitter() *Emitter { return &Emitter{bus: b} }

// Emitter puts events on a Bus.
type Emitter struct {
	bus    *Bus
	mu     sync.Mutex
	closed bool
}

var _ msgqueue.Emitter = (*Emitter)(nil)

// Emit validates and encodes ev and appends it to every queue bound for its
// name.
func (e *Emitter) Emit(ctx context.Context, ev contracts.Event) error {
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return fmt.Errorf("emitting %s: %w", ev.EventName(), msgqueue.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("emitting %s: %w", ev.EventName(), err)
	}
	if err := ev.Validate(); err != nil {
		return fmt.Errorf("emitting %s: %w", ev.EventName(), err)
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", ev.EventName(), err)
	}
	if err := msgqueue.CheckSize(messageSize(ev.EventName(), body)); err != nil {
		return fmt.Errorf("emitting %s: %w", ev.EventName(), err)
	}
	m := Message{ID: rand.Text(), Name: ev.EventName(), Body: body}
	b := e.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	routed := false
	for _, q := range b.queues {
		if q.names[m.Name] {
			q.push(m)
			routed = true
		}
	}
	if !routed {
		return fmt.Errorf("emitting %s: %w", m.Name, msgqueue.ErrUnroutable)
	}
	b.emitted = append(b.emitted, m)
	return nil
}

// Health reports nothing: the bus is always there.
func (e *Emitter) Health(context.Context) error { return nil }

// Close makes later Emits fail with msgqueue.ErrClosed.
func (e *Emitter) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	return nil
}

// Listener returns a listener for the named queue, which it creates if
// needed and binds to names (at least one). Events emitted from now on for
// those names are kept for it, even before Listen runs; several listeners
// on one queue compete for its messages.
func (b *Bus) Listener(queueName string, names []string) (*Listener, error) {
	names, err := listenrules.Built(fmt.Sprintf("queue %q", queueName), names)
	if err != nil {
		return nil, err
	}
	return &Listener{bus: b, name: queueName, q: b.declare(queueName, names), names: names}, nil
}

// Listener delivers the events of one queue to a handler.
type Listener struct {
	bus   *Bus
	name  string
	q     *queue
	names []string

	life listenrules.Lifecycle // one Listen at a time, none after Close

	mu    sync.Mutex
	down  error // the handler's last msgqueue.Unavailable, until a call ends otherwise
	downs int   // unavailable calls in a row
}

var _ msgqueue.Listener = (*Listener)(nil)

// Listen calls h for each message of the queue until ctx ends or Close is
// called; see the package documentation for the delivery rules.
func (l *Listener) Listen(ctx context.Context, h msgqueue.Handler, names ...string) error {
	filter, err := listenrules.Filter(l.names, names)
	if err != nil {
		return fmt.Errorf("listening on queue %q: %w", l.name, err)
	}
	stop, end, err := l.life.Begin(ctx, fmt.Sprintf("queue %q", l.name))
	if err != nil {
		return err
	}
	defer end()

	for {
		d, ok := l.next(stop)
		if !ok {
			return nil
		}
		if wait := l.handle(ctx, h, filter, d); wait > 0 {
			backoff.Sleep(stop, wait)
		}
	}
}

// Health reports a handler that cannot apply events (it answered
// msgqueue.Unavailable, and has not succeeded since); the bus itself is
// always there.
func (l *Listener) Health(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down != nil {
		return fmt.Errorf("the handler of queue %q cannot apply events (retrying): %w", l.name, l.down)
	}
	return nil
}

// handlerDown notes an unavailable handler (err) or one that answered
// otherwise (nil), and returns how many unavailable calls came in a row.
func (l *Listener) handlerDown(err error) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down = err
	if err == nil {
		l.downs = 0
	} else {
		l.downs++
	}
	return l.downs
}

// next takes the head of the queue, waiting until there is one; false when
// stop ended (Listen's ctx ended or the listener is closing).
func (l *Listener) next(stop context.Context) (delivery, bool) {
	for {
		if stop.Err() != nil {
			return delivery{}, false
		}
		l.bus.mu.Lock()
		if len(l.q.ready) > 0 {
			d := l.q.ready[0]
			l.q.ready = l.q.ready[1:]
			d.count++
			l.bus.mu.Unlock()
			return d, true
		}
		l.bus.mu.Unlock()
		select {
		case <-stop.Done():
			return delivery{}, false
		case <-l.q.notify:
			// Pass the wake-up on: another listener of the queue may be
			// waiting too.
			l.bus.mu.Lock()
			if len(l.q.ready) > 1 {
				select {
				case l.q.notify <- struct{}{}:
				default:
				}
			}
			l.bus.mu.Unlock()
		}
	}
}

// messageSize is what msgqueue.MaxMessageSize bounds of a message on the
// bus: its body and its name, which a broker's message carries too (on
// RabbitMQ in a header, on Kafka in the envelope, both counted there).
// An event whose body alone is at the limit, which both brokers refuse,
// is refused here too.
func messageSize(name string, body []byte) int { return len(name) + len(body) }

// handle decodes d and runs h; it returns how long to wait before the next
// delivery (after a handler error).
func (l *Listener) handle(ctx context.Context, h msgqueue.Handler, filter map[string]bool, d delivery) time.Duration {
	if err := msgqueue.CheckSize(messageSize(d.Name, d.Body)); err != nil {
		l.deadLetter(d, "too large: "+err.Error())
		return 0
	}
	ev, err := contracts.Decode(d.Name, d.Body)
	if err != nil {
		l.deadLetter(d, "undecodable: "+err.Error())
		return 0
	}
	if !filter[d.Name] {
		return 0 // acknowledged without calling h
	}
	err = h(ctx, ev)
	if msgqueue.IsUnavailable(err) {
		// Not the message's fault: it goes back first, uncounted.
		downs := l.handlerDown(err)
		l.bus.log.Warn("the handler cannot apply events; delivering the same one again", "queue", l.name, "event", d.Name, "id", d.ID, "err", err)
		d.count--
		l.bus.mu.Lock()
		l.q.ready = append([]delivery{d}, l.q.ready...)
		l.bus.mu.Unlock()
		return l.bus.backoff.Delay(downs)
	}
	l.handlerDown(nil)
	switch {
	case err == nil:
		return 0
	case msgqueue.IsPermanent(err):
		l.deadLetter(d, "refused by the handler: "+err.Error())
		return 0
	case d.count >= l.bus.limit:
		l.deadLetter(d, fmt.Sprintf("delivery limit %d reached: %v", l.bus.limit, err))
		return 0
	}
	l.bus.log.Warn("handler failed; delivering again", "queue", l.name, "event", d.Name, "id", d.ID, "delivery", d.count, "err", err)
	l.bus.mu.Lock()
	l.q.ready = append([]delivery{d}, l.q.ready...)
	l.bus.mu.Unlock()
	return l.bus.backoff.Delay(d.count)
}

// deadLetter records d as given up on.
func (l *Listener) deadLetter(d delivery, reason string) {
	l.bus.log.Warn("dead-lettering message", "queue", l.name, "event", d.Name, "id", d.ID, "reason", reason)
	l.bus.mu.Lock()
	l.q.dead = append(l.q.dead, DeadLetter{Message: d.Message, Reason: reason})
	l.bus.mu.Unlock()
}

// Close stops Listen after the running handler returned and waits for it.
func (l *Listener) Close() error {
	if l.life.Close() {
		l.life.Wait()
	}
	return nil
}
