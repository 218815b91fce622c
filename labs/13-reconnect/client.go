package main

// This file is the second half of the lab: what part 3 runs. A small
// reconnecting client, the same loop as the capstone's AMQP transport: the
// consumer and the publisher each have their own reconnect loop, every
// session is a new connection and a new channel, and nothing of an old one
// is used again. Beside it, bookings, the idempotent handler the consumer
// calls.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/contracts"
	"example.com/myevents/labs/labkit"
)

// consumer consumes a queue with a reconnect loop of its own: every session
// is a new connection, a new channel, Qos and Consume, and a delivery is
// only ever acked on the channel it arrived on.
type consumer struct {
	url, queue, name string
	prefetch         int
	// handle is the application's work on one delivery. It must be
	// idempotent: a message comes again whenever its ack did not reach the
	// broker. An error means the message cannot be processed at all.
	handle func(ctx context.Context, d amqp.Delivery) error
	drain  chan struct{}    // closed to cancel the consumer and return
	lost   chan *amqp.Error // each session's connection error, for the lab to print

	mu         sync.Mutex // guards the fields below
	ackRefused int        // acks that failed because the channel was gone
	reconnects int        // sessions after the first
	lastErr    error      // why the last session ended
}

// consumerStats is a copy of a consumer's counters.
type consumerStats struct {
	ackRefused, reconnects int
	lastErr                error
}

func (c *consumer) stats() consumerStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return consumerStats{ackRefused: c.ackRefused, reconnects: c.reconnects, lastErr: c.lastErr}
}

// session dials, opens a channel, sets the prefetch, consumes, and hands
// every delivery to deliver until the deliveries channel closes (the
// connection or the channel died), deliver reports a failed ack, ctx ends,
// or drain asks it to finish. done means drained; consumed means the
// session got as far as consuming.
func (c *consumer) session(ctx context.Context, n int) (done, consumed bool, err error) {
	defer func() {
		if err != nil {
			c.mu.Lock()
			c.lastErr = err
			c.mu.Unlock()
		}
	}()
	conn, err := labkit.DialAMQPContext(ctx, c.url, c.name)
	if err != nil {
		return false, false, err
	}
	// Closing the connection hands every unacked delivery back to the
	// broker, which delivers it again.
	told := watchClose(conn, c.lost)
	defer func() { endSession(ctx, conn, told, err, closeNoticeWait) }()
	if n > 0 {
		c.mu.Lock()
		c.reconnects++
		c.mu.Unlock()
	}
	ch, err := conn.Channel()
	if err != nil {
		return false, false, fmt.Errorf("opening a channel: %w", err)
	}
	if err := ch.Qos(c.prefetch, 0 /* prefetch size: no byte limit */, false /* global */); err != nil {
		return false, false, fmt.Errorf("setting prefetch %d: %w", c.prefetch, err)
	}
	const tag = "lab13-fix" // ours, so drain can cancel it
	deliveries, err := consume(ch, c.queue, tag)
	if err != nil {
		return false, false, err
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
			if err := c.deliver(ctx, ch, d); err != nil {
				// The ack failed: the channel is gone, and this session
				// with it. The broker has put the message back.
				c.mu.Lock()
				c.ackRefused++
				c.mu.Unlock()
				return false, true, err
			}
		}
	}
}

// bookings is part 3's application: the consumer's handler. It is
// idempotent, keyed by message ID, and it holds the holdAt-th distinct
// message, processed and not yet acked, until the lab has cut the
// consumer's connection.
type bookings struct {
	holdAt  int            // which distinct message to hold (fixHoldAt in the lab)
	holding chan string    // gets the ID of the held message
	release chan struct{}  // closed to let the held message go on to its ack
	held    bool           // the hold has happened (consumer goroutine only)
	mu      sync.Mutex     // guards calls
	calls   map[string]int // handler calls per message ID: the idempotency record
}

// handle decodes the booking and records it. A message seen before is
// acked without doing its work again.
func (b *bookings) handle(ctx context.Context, d amqp.Delivery) error {
	if _, err := process(d); err != nil {
		return err
	}
	b.mu.Lock()
	b.calls[d.MessageId]++
	first := b.calls[d.MessageId] == 1
	distinct := len(b.calls)
	b.mu.Unlock()
	if first && distinct == b.holdAt && !b.held {
		b.held = true
		b.holding <- d.MessageId
		select {
		case <-b.release:
		case <-ctx.Done():
		}
	}
	return nil
}

// snapshot copies the handler calls per message ID.
func (b *bookings) snapshot() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return maps.Clone(b.calls)
}

// publisher publishes a steady stream with confirms and its own reconnect
// loop. A message counts as published only once the broker confirmed it;
// anything else is sent again, on the next connection if need be, with the
// same message ID.
type publisher struct {
	url, exchange, name string
	lost                chan *amqp.Error // each session's connection error, for the lab to print

	// The publisher goroutine owns these; stats copies them under mu.
	mu             sync.Mutex
	confirmed      []string
	unconfirmed    int // publishes not confirmed when a connection dropped, sent again
	reconnects     int
	afterReconnect int // confirmed since the last reconnect
	retry          []string
	next           int
}

// publisherStats is a copy of a publisher's counters.
type publisherStats struct {
	confirmed                               []string
	unconfirmed, reconnects, afterReconnect int
}

func (p *publisher) stats() publisherStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return publisherStats{
		confirmed:   append([]string(nil), p.confirmed...),
		unconfirmed: p.unconfirmed, reconnects: p.reconnects, afterReconnect: p.afterReconnect,
	}
}

// run publishes until stop is closed and every message is confirmed; it
// reconnects with backoff whenever a session breaks.
func (p *publisher) run(ctx context.Context, stop <-chan struct{}) error {
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
func (p *publisher) session(ctx context.Context, n int, stop <-chan struct{}) (done bool, err error) {
	conn, err := labkit.DialAMQPContext(ctx, p.url, p.name)
	if err != nil {
		return false, err
	}
	told := watchClose(conn, p.lost)
	defer func() { endSession(ctx, conn, told, err, closeNoticeWait) }()
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
func (p *publisher) confirm(id string) {
	p.confirmed = append(p.confirmed, id)
	p.afterReconnect++
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

// consume starts a consumer that acks by hand, after processing (lab 04):
// the broker keeps every delivery until its ack, and gives it back if the
// channel dies first. An empty tag lets the library pick one.
func consume(ch *amqp.Channel, queue, tag string) (<-chan amqp.Delivery, error) {
	deliveries, err := ch.Consume(queue,
		tag,   // consumer tag
		false, // auto-ack: no, ack after processing
		false, // exclusive
		false, // no-local
		false, // no-wait
		nil,   // args
	)
	if err != nil {
		return nil, fmt.Errorf("consuming queue %s: %w", queue, err)
	}
	return deliveries, nil
}

// watchClose passes the connection's close error, if the broker or the
// network closed it, to lost without ever blocking. The channel it
// returns closes once amqp091-go has told how the connection closed.
func watchClose(conn *amqp.Connection, lost chan<- *amqp.Error) <-chan struct{} {
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	told := make(chan struct{})
	go func() {
		defer close(told)
		if e, ok := <-closed; ok && e != nil {
			select {
			case lost <- e:
			default:
			}
		}
	}()
	return told
}

// endSession closes a session's connection. A session that ended with an
// error may have ended because the broker is closing the connection (a
// publish failed on the dying socket) before amqp091-go handled the
// broker's connection.close. amqp091-go keeps the first of the two
// closes, so a Close of ours first would drop the broker's reason, and
// lost would never hear it. So, unless the session ended cleanly or ctx
// ended (Ctrl-C), it waits up to wait for told (watchClose) first. An
// open connection whose session failed for another reason waits the
// whole of wait; then the reconnect's backoff follows anyway.
func endSession(ctx context.Context, conn *amqp.Connection, told <-chan struct{}, err error, wait time.Duration) {
	if err != nil && ctx.Err() == nil {
		timer := time.NewTimer(wait)
		select {
		case <-told:
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
	}
	_ = conn.Close()
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

// deleteTopology is the lab's cleanup (main.go): it deletes the queue, then
// the exchange if no queue is bound to it any more (inUse reports that the
// broker refused for that reason), on a channel of its own, so that it
// works even when another channel was closed by an error.
func deleteTopology(conn *amqp.Connection, queue, exchange string) (inUse bool, err error) {
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("opening a channel to clean up: %w", err)
	}
	defer ch.Close()
	if _, err := ch.QueueDelete(queue, false /* if-unused */, false /* if-empty */, false /* no-wait */); err != nil {
		return false, fmt.Errorf("deleting queue %s: %w", queue, err)
	}
	var amqpErr *amqp.Error
	switch err := ch.ExchangeDelete(exchange, true /* if-unused */, false /* no-wait */); {
	case errors.As(err, &amqpErr) && amqpErr.Code == amqp.PreconditionFailed:
		return true, nil
	case err != nil:
		return false, fmt.Errorf("deleting exchange %s: %w", exchange, err)
	}
	return false, nil
}
