package rabbitmq

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"example.com/myevents/capstone/internal/backoff"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Emitter publishes events to the exchange; see the package documentation.
// It is safe for concurrent use.
type Emitter struct {
	url string
	cfg config

	mu      sync.Mutex
	conn    *amqp.Connection // current connection; nil while reconnecting
	pubs    []*publisher     // its confirm-mode channels
	ready   chan struct{}    // closed once pubs belong to a live connection
	closed  bool
	closing context.Context    // ends at Close: a wait, a dial in progress
	end     context.CancelFunc // cancels closing
	blocked string             // why the broker blocks the connection (connection.blocked); "" when it does not

	next     atomic.Uint64  // spreads Emit calls over pubs
	inflight sync.WaitGroup // Emit calls in progress
	done     chan struct{}  // closed when the supervisor returned

	confirmed, resent, reconnects atomic.Int64
}

var _ msgqueue.Emitter = (*Emitter)(nil)

// NewEmitter connects to the broker at url and declares the exchange. The
// first connection must succeed; later ones are retried in the background.
func NewEmitter(ctx context.Context, url string, opts ...Option) (*Emitter, error) {
	e := &Emitter{
		url:   url,
		cfg:   newConfig(opts),
		ready: make(chan struct{}),
		done:  make(chan struct{}),
	}
	conn, pubs, err := e.connect(ctx)
	if err != nil {
		return nil, err
	}
	e.closing, e.end = context.WithCancel(context.Background())
	e.setConnected(conn, pubs)
	go e.supervise(conn)
	return e, nil
}

// publisher is one confirm-mode channel of a connection.
type publisher struct {
	ch      *amqp.Channel
	slots   chan struct{}    // one per unconfirmed message: the window
	returns chan amqp.Return // unroutable messages the broker sent back

	mu       sync.Mutex
	returned map[string][]amqp.Return // by message ID, drained from returns; the same event emitted twice at once has one ID
}

// newPublisher publishes on ch, in confirm mode, with up to window
// messages unconfirmed.
func newPublisher(ch *amqp.Channel, window int) *publisher {
	return &publisher{
		ch:    ch,
		slots: make(chan struct{}, window),
		// The broker sends a mandatory message it cannot route back (a
		// basic.return) just before it acks it. The buffer holds a return
		// for every message that can be unconfirmed, so the client's
		// reader never waits for us.
		returns:  ch.NotifyReturn(make(chan amqp.Return, 2*window)),
		returned: map[string][]amqp.Return{},
	}
}

// connect dials, declares the exchange and opens the confirm-mode channels.
func (e *Emitter) connect(ctx context.Context) (*amqp.Connection, []*publisher, error) {
	conn, err := dial(ctx, e.url, e.cfg, "myevents emitter")
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*amqp.Connection, []*publisher, error) {
		_ = conn.Close()
		return nil, nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return fail(fmt.Errorf("opening a channel: %w", err))
	}
	if err := declareExchange(ch, "exchange", e.cfg.exchange, amqp.ExchangeTopic); err != nil {
		return fail(err)
	}
	if err := ch.Close(); err != nil {
		return fail(fmt.Errorf("closing the declaring channel: %w", err))
	}
	pubs := make([]*publisher, e.cfg.channels)
	for i := range pubs {
		ch, err := conn.Channel()
		if err != nil {
			return fail(fmt.Errorf("opening publishing channel %d: %w", i, err))
		}
		// Confirm mode: the broker acks every message once it took
		// responsibility for it (for a persistent message routed to a
		// durable queue: written to disk).
		if err := ch.Confirm(false /* no-wait */); err != nil {
			return fail(fmt.Errorf("enabling publisher confirms: %w", err))
		}
		pubs[i] = newPublisher(ch, e.cfg.window)
	}
	return conn, pubs, nil
}

// setConnected publishes a new connection to Emit calls.
func (e *Emitter) setConnected(conn *amqp.Connection, pubs []*publisher) {
	// A broker short of memory or disk blocks the connections that
	// publish: nothing is confirmed until its alarm clears. Health says so
	// (it said 200 through a 20-second disk alarm). The channel closes
	// with the connection, which ends the goroutine.
	blocks := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	go func() {
		for b := range blocks {
			e.mu.Lock()
			if e.conn == conn {
				e.blocked = ""
				if b.Active {
					e.blocked = cmp.Or(b.Reason, "no reason given")
				}
			}
			e.mu.Unlock()
		}
	}()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.conn, e.pubs, e.blocked = conn, pubs, ""
	close(e.ready)
}

// supervise waits for the connection to break and reconnects with backoff,
// until Close.
func (e *Emitter) supervise(conn *amqp.Connection) {
	defer close(e.done)
	log := e.cfg.log.With("component", "emitter", "exchange", e.cfg.exchange)
	for {
		// A closed connection closes this channel (with the reason, or
		// nil after Close).
		lost := conn.NotifyClose(make(chan *amqp.Error, 1))
		select {
		case <-e.closing.Done():
			return
		case reason := <-lost:
			log.Warn("connection lost; reconnecting", "reason", reason)
		}
		e.mu.Lock()
		e.conn, e.pubs = nil, nil
		e.ready = make(chan struct{})
		e.mu.Unlock()

		for failures := 1; ; failures++ {
			if !backoff.Sleep(e.closing, e.cfg.reconnect.Delay(failures)) {
				return
			}
			c, pubs, err := e.connect(e.closing)
			if err != nil {
				log.Warn("reconnecting failed; retrying", "err", err)
				continue
			}
			e.mu.Lock()
			if e.closed {
				e.mu.Unlock()
				_ = c.Close()
				return
			}
			e.mu.Unlock()
			e.setConnected(c, pubs)
			e.reconnects.Add(1)
			log.Info("reconnected")
			conn = c
			break
		}
	}
}

// errNotConfirmed marks a message the broker did not confirm (a nack, or the
// channel closed before the confirm): it is published again.
var errNotConfirmed = errors.New("the broker did not confirm the message")

// Emit publishes ev and waits for the broker's confirm; see the package
// documentation. An error other than msgqueue.ErrUnroutable means the event
// may or may not be stored.
func (e *Emitter) Emit(ctx context.Context, ev contracts.Event) error {
	name := ev.EventName()
	if err := ev.Validate(); err != nil {
		return fmt.Errorf("emitting %s: %w", name, err)
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", name, err)
	}
	headers := amqp.Table{HeaderEventName: name}
	// What a listener counts: the body and the headers (messageSize).
	if err := msgqueue.CheckSize(messageSize(amqp.Delivery{Body: body, Headers: headers})); err != nil {
		return fmt.Errorf("emitting %s: %w", name, err)
	}
	msg := amqp.Publishing{
		Headers:      headers,
		ContentType:  contentType,
		DeliveryMode: amqp.Persistent, // written to disk by a durable queue
		// The same event always gets the same ID, resent or not.
		MessageId: msgqueue.MessageID(name, body),
		Timestamp: time.Now(),
		Type:      name,
		Body:      body,
	}

	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return fmt.Errorf("emitting %s: %w", name, msgqueue.ErrClosed)
	}
	e.inflight.Add(1)
	e.mu.Unlock()
	defer e.inflight.Done()

	// Resends wait a quarter of the reconnect backoff first, and end at
	// Close as well as with ctx.
	resend := backoff.Policy{First: e.cfg.reconnect.First / 4, Longest: e.cfg.reconnect.Longest, Jitter: true}
	wait, stop := context.WithCancel(ctx)
	defer stop()
	defer context.AfterFunc(e.closing, stop)()
	// final is set once an attempt was sent and its confirm never came:
	// the broker may hold the message, so giving up says the outcome is
	// not known yet (msgqueue.UnconfirmedError), not that it failed. It
	// gets the broker's late answer for an attempt still waiting for its
	// confirm, and "unknown" for one nacked or cut off.
	var final <-chan error
	giveUp := func(err error) error {
		if final == nil {
			return err
		}
		return &msgqueue.UnconfirmedError{Err: err, Final: final}
	}
	for attempt := 1; ; attempt++ {
		p, conn, err := e.publisher(ctx)
		if err != nil {
			return giveUp(fmt.Errorf("emitting %s %s (attempt %d): %w", name, msg.MessageId, attempt, err))
		}
		err = p.publish(ctx, e.cfg.exchange, name, msg)
		if sent, ok := errors.AsType[*sentError](err); ok {
			final = sent.final
		} else if err == errNotConfirmed {
			unknown := make(chan error, 1)
			unknown <- fmt.Errorf("an attempt was sent and never confirmed: %w", errNotConfirmed)
			final = unknown
		}
		switch {
		case err == nil:
			e.confirmed.Add(1)
			return nil
		case errors.Is(err, msgqueue.ErrUnroutable):
			return fmt.Errorf("emitting %s %s: %w", name, msg.MessageId, err)
		case ctx.Err() != nil:
			return giveUp(fmt.Errorf("emitting %s %s: waiting for the broker's confirm: %w", name, msg.MessageId, ctx.Err()))
		}
		// Not confirmed: publish again, on a new connection if this
		// channel is broken. Duplicates are possible, loss is not.
		if p.ch.IsClosed() {
			e.dropConnection(conn)
		}
		e.resent.Add(1)
		e.cfg.log.Debug("publishing again", "event", name, "id", msg.MessageId, "attempt", attempt, "err", err)
		if !backoff.Sleep(wait, resend.Delay(attempt)) {
			if ctx.Err() != nil {
				return giveUp(fmt.Errorf("emitting %s %s: not confirmed after %d attempts: %w", name, msg.MessageId, attempt, ctx.Err()))
			}
			return giveUp(fmt.Errorf("emitting %s %s: not confirmed before Close: %w", name, msg.MessageId, msgqueue.ErrClosed))
		}
	}
}

// publisher waits for a live connection and picks one of its channels.
func (e *Emitter) publisher(ctx context.Context) (*publisher, *amqp.Connection, error) {
	for {
		e.mu.Lock()
		closed, ready, conn, pubs := e.closed, e.ready, e.conn, e.pubs
		e.mu.Unlock()
		if closed {
			return nil, nil, msgqueue.ErrClosed
		}
		if pubs != nil {
			return pubs[e.next.Add(1)%uint64(len(pubs))], conn, nil
		}
		select {
		case <-ready:
		case <-e.closing.Done():
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("waiting for the connection to the broker: %w", ctx.Err())
		}
	}
}

// dropConnection closes conn if it is still the current one, so that the
// supervisor reconnects (a channel broke while the connection stayed up).
func (e *Emitter) dropConnection(conn *amqp.Connection) {
	e.mu.Lock()
	current := e.conn == conn
	e.mu.Unlock()
	if current {
		_ = conn.Close()
	}
}

// publish sends msg and waits for its confirm. It returns nil once the
// broker acked it, an error wrapping msgqueue.ErrUnroutable if the broker
// returned it, errNotConfirmed on a nack or a broken channel, and ctx's
// error when ctx ends first.
func (p *publisher) publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.slots }()
	dc, err := p.ch.PublishWithDeferredConfirm(exchange, key,
		true,  // mandatory: return the message if no queue is bound for it
		false, // immediate: not supported by RabbitMQ
		msg)
	if err != nil {
		return fmt.Errorf("%w: publishing: %v", errNotConfirmed, err)
	}
	select {
	case <-dc.Done():
	case <-ctx.Done():
		// Sent, not confirmed yet: the broker may still store it.
		return &sentError{err: ctx.Err(), final: p.final(dc, msg.MessageId)}
	}
	return p.answer(dc, msg.MessageId)
}

// answer is what the broker's settled confirm dc says about the message
// with this ID: nil once acked and not returned, an error wrapping
// msgqueue.ErrUnroutable if the broker returned it, errNotConfirmed on a
// nack or a broken channel.
func (p *publisher) answer(dc *amqp.DeferredConfirmation, id string) error {
	if !dc.Acked() {
		return errNotConfirmed
	}
	if r, ok := p.takeReturn(id); ok {
		return fmt.Errorf("%w (exchange %q, routing key %q: %d %s)", msgqueue.ErrUnroutable, r.Exchange, r.RoutingKey, r.ReplyCode, r.ReplyText)
	}
	return nil
}

// final waits, on a goroutine of its own, for the confirm an emit gave
// up on, and hands over the broker's last word as
// msgqueue.UnconfirmedError's Final does: nil when it stored the
// message; an error wrapping msgqueue.ErrRefused when it returned it
// unroutable (no queue holds it); another error when a nack or a broken
// channel leaves it unknown. The confirm settles at the latest when the
// channel closes (Close closes the connection).
func (p *publisher) final(dc *amqp.DeferredConfirmation, id string) <-chan error {
	out := make(chan error, 1)
	go func() {
		<-dc.Done()
		err := p.answer(dc, id)
		if errors.Is(err, msgqueue.ErrUnroutable) {
			err = fmt.Errorf("%w: %w", msgqueue.ErrRefused, err)
		} else if err != nil {
			err = fmt.Errorf("the broker's answer leaves it unknown whether it stored the event: %w", err)
		}
		out <- err
	}()
	return out
}

// sentError is publish's error for a message sent whose confirm had not
// come when ctx ended: final gets the broker's last word (see final).
type sentError struct {
	err   error
	final <-chan error
}

func (e *sentError) Error() string { return e.err.Error() }
func (e *sentError) Unwrap() error { return e.err }

// takeReturn reports whether the broker returned the message with the given
// ID. The broker sends the return before the ack, and the client hands it to
// p.returns before it processes the ack, so after the ack the return is
// either in p.returns or already in p.returned.
func (p *publisher) takeReturn(id string) (amqp.Return, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
drain:
	for {
		select {
		case r, ok := <-p.returns:
			if !ok {
				break drain
			}
			p.returned[r.MessageId] = append(p.returned[r.MessageId], r)
		default:
			break drain
		}
	}
	rs := p.returned[id]
	if len(rs) == 0 {
		return amqp.Return{}, false
	}
	if len(rs) == 1 {
		delete(p.returned, id)
	} else {
		p.returned[id] = rs[1:]
	}
	return rs[0], true
}

// EmitterStats counts what an emitter did.
type EmitterStats struct {
	Confirmed  int64 // Emit calls that returned nil
	Resent     int64 // messages published again after a nack or a broken channel
	Reconnects int64 // connections re-established after one broke
}

// Stats returns the emitter's counters.
func (e *Emitter) Stats() EmitterStats {
	return EmitterStats{Confirmed: e.confirmed.Load(), Resent: e.resent.Load(), Reconnects: e.reconnects.Load()}
}

// Connected reports whether the emitter has a live connection.
func (e *Emitter) Connected() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.conn != nil && !e.conn.IsClosed()
}

// Health reports an emitter without a live connection (it is
// reconnecting), or whose connection the broker blocks (a memory or disk
// alarm: nothing is confirmed until it clears).
func (e *Emitter) Health(context.Context) error {
	if !e.Connected() {
		return errors.New("the emitter is not connected to RabbitMQ (reconnecting)")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.blocked != "" {
		return fmt.Errorf("RabbitMQ blocks the emitter's connection (%s): no event is confirmed until the broker's alarm clears", e.blocked)
	}
	return nil
}

// Close stops new emits, waits (up to the close timeout) for the ones in
// progress to be confirmed, and closes the connection. Emits that were
// waiting for a reconnect return an error wrapping msgqueue.ErrClosed.
func (e *Emitter) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.end()
	e.mu.Unlock()

	waited := make(chan struct{})
	go func() {
		e.inflight.Wait()
		close(waited)
	}()
	timer := time.NewTimer(e.cfg.closeTimeout)
	defer timer.Stop()
	select {
	case <-waited:
	case <-timer.C:
		e.cfg.log.Warn("closing with emits still unconfirmed", "timeout", e.cfg.closeTimeout)
	}

	// Closing the connection nacks whatever is still unconfirmed.
	<-e.done
	e.mu.Lock()
	conn := e.conn
	e.conn, e.pubs = nil, nil
	e.mu.Unlock()
	var err error
	if conn != nil && !conn.IsClosed() {
		if cerr := conn.Close(); cerr != nil && !errors.Is(cerr, amqp.ErrClosed) {
			err = fmt.Errorf("closing the emitter's connection: %w", cerr)
		}
	}
	<-waited
	return err
}
