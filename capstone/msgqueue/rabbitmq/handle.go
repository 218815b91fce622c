package rabbitmq

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"example.com/myevents/capstone/internal/backoff"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
	amqp "github.com/rabbitmq/amqp091-go"
)

// session is what consuming on one channel needs: the channel every
// acknowledgement of its deliveries goes to, a channel for dead-letter
// copies, and the deliveries waiting out a retry backoff.
type session struct {
	l       *Listener
	ch      *amqp.Channel
	stop    context.Context // ends when Listen's ctx ends or Close is called
	dlq     *deadLetterer
	retries *retries
	h       msgqueue.Handler
	hb      msgqueue.BatchHandler // nil: every event goes to h alone (window.go)
	filter  map[string]bool
	acks    acks // handled, not acknowledged yet (acks.go)
}

// end stops the retry timers and closes the dead-letter channel; the
// caller closes ch, which returns every unacknowledged delivery.
func (s *session) end() {
	s.retries.stop()
	s.dlq.close()
}

// handle decides what happens to one delivery. Every acknowledgement goes
// to s.ch, the channel the delivery arrived on: if it is gone, the broker
// has already put the message back, and acknowledging its tag anywhere
// else would acknowledge a different message.
//
// A message that no handler may see (larger than msgqueue.MaxMessageSize,
// without an event name or with one no contract has, with a routing key
// that is not its event name, with a body that does not decode or
// validate) is dead-lettered at once, as is one the handler refuses with
// msgqueue.Permanent.
func (s *session) handle(ctx context.Context, d amqp.Delivery) {
	if m, ok := s.check(ctx, d); ok {
		s.apply(ctx, m)
	}
}

// decoded is a delivery that passed check, with the event it carries.
type decoded struct {
	d   amqp.Delivery
	ev  contracts.Event
	log *slog.Logger
}

// messageSize is what msgqueue.MaxMessageSize bounds of a delivery: its
// body and its headers together (as AMQP encodes them: tableSize), as a
// Kafka record's key, value and headers are. A valid event under hundreds
// of kilobytes of headers (the broker takes them up to its frame size) is
// as much over the limit as one with such a body. On a redelivery the
// x-delivery-count header is the quorum queue's own, written as it
// delivers the message again, and does not count: a message that fitted
// when it came must fit when it comes back. On a first delivery it is the
// publisher's, and counts like any other.
func messageSize(d amqp.Delivery) int {
	n := len(d.Body) + tableSize(d.Headers)
	if v, ok := d.Headers["x-delivery-count"]; ok && d.Redelivered {
		n -= 1 + len("x-delivery-count") + fieldSize(v)
	}
	return n
}

// maxNameHeader bounds the x-event-name a listener logs and repeats in a
// dead-letter copy (x-dlq-event-name). No event's name comes near it; a
// longer one would lengthen every log line about the message, and the
// copy's headers.
const maxNameHeader = 255

// check settles a delivery that no handler may see (dead-lettered) or that
// the name filter skips (noted for acknowledgement), and reports false for
// it; else it returns the decoded event for the handler.
func (s *session) check(ctx context.Context, d amqp.Delivery) (decoded, bool) {
	l := s.l
	name := EventNameOf(d.Headers)
	if len(name) > maxNameHeader {
		name = name[:maxNameHeader] // no event is called that: unknown all the same
	}
	log := l.log.With("event", name, "message_id", d.MessageId, "delivery_tag", d.DeliveryTag)
	if s.ch.IsClosed() {
		// Handed over just as the channel died: it will come again.
		log.Debug("skipping a delivery of a closed channel")
		return decoded{}, false
	}
	poison := func(reason string, err error) { s.deadLetter(ctx, log, d, name, reason, 0, err) }
	if err := msgqueue.CheckSize(messageSize(d)); err != nil {
		poison(msgqueue.ReasonTooLarge, err)
		return decoded{}, false
	}
	if name == "" {
		err := fmt.Errorf("the message has no %s header", HeaderEventName)
		if v, ok := d.Headers[HeaderEventName]; ok {
			err = fmt.Errorf("the message's %s header is empty or a %T, not a string", HeaderEventName, v)
		}
		poison(msgqueue.ReasonMissingName, err)
		return decoded{}, false
	}
	if _, err := contracts.New(name); err != nil {
		poison(msgqueue.ReasonUnknownEvent, err)
		return decoded{}, false
	}
	// The binding chose this queue by the routing key; the handler would
	// act on the header. They must agree, or a message bound for one
	// handler is applied as another event.
	if d.RoutingKey != name {
		poison(msgqueue.ReasonRoutingKey, fmt.Errorf("routing key %q differs from %s %q", d.RoutingKey, HeaderEventName, name))
		return decoded{}, false
	}
	ev, err := contracts.Decode(name, d.Body)
	if err != nil {
		poison(msgqueue.ReasonInvalidPayload, err)
		return decoded{}, false
	}
	if !s.filter[name] {
		l.skipped.Add(1)
		s.note(d)
		return decoded{}, false
	}
	return decoded{d: d, ev: ev, log: log}, true
}

// apply hands one checked event to the handler and settles its delivery
// by the result.
func (s *session) apply(ctx context.Context, m decoded) {
	l, d, log := s.l, m.d, m.log
	name := EventNameOf(d.Headers)
	l.handled.Add(1)
	err := s.h(ctx, m.ev)
	if msgqueue.IsUnavailable(err) {
		var settle bool
		if err, settle = s.holdWhileDown(ctx, m, err); !settle {
			return
		}
	}
	count := deliveryCount(d)
	switch {
	case err == nil:
		s.note(d) // acknowledged with the others that arrived meanwhile
	case msgqueue.IsPermanent(err):
		s.deadLetter(ctx, log, d, name, msgqueue.ReasonPermanent, count+1, err)
	case count+1 >= l.cfg.deliveryLimit:
		// The last delivery the limit allows: dead-letter it ourselves,
		// saying why, rather than let the broker do it without a reason.
		s.deadLetter(ctx, log, d, name, msgqueue.ReasonRetriesExhausted, count+1, err)
	default:
		// Wait before the message goes back to the queue, longer with
		// every delivery, so a failing handler does not spin; meanwhile
		// the listener goes on with the other messages.
		wait := l.cfg.retry.Delay(count + 1)
		log.Warn("handler failed; the message will be delivered again", "err", err, "deliveries_before", count, "retry_in", wait)
		s.retries.after(wait, d)
	}
}

// holdWhileDown keeps a delivery whose handler cannot apply events
// (msgqueue.Unavailable: its store is down, not this message wrong) and
// hands it over again after a growing backoff, in place, until the
// handler answers otherwise; it returns that answer and true, for apply
// to settle the delivery by. The broker never sees the message back, so
// the outage costs it no delivery: dead-lettering every message heard
// while the store is down would lose them all. Meanwhile the listener's
// Health says it cannot make progress. If the listener stops (Close, or
// Listen's context) or the channel closes first, it returns false with
// the delivery unsettled: the broker puts it back.
//
// RabbitMQ itself bounds the hold: a delivery unacknowledged for longer
// than the broker's consumer_timeout (30 minutes by default) closes the
// channel and returns every delivery of it to the queue, counting a
// delivery for each; after x-delivery-limit such returns the broker
// dead-letters them (reason delivery_limit). An outage of hours can still
// cost events on RabbitMQ.
func (s *session) holdWhileDown(ctx context.Context, m decoded, err error) (error, bool) {
	l := s.l
	s.flushAcks() // the deliveries before it are done: no need to hold them too
	defer l.setHandlerDown(nil)
	for downs := 1; msgqueue.IsUnavailable(err); downs++ {
		l.setHandlerDown(err)
		wait := l.cfg.retry.Delay(downs)
		m.log.Warn("the handler cannot apply events; handing the same message over again", "err", err, "in_a_row", downs, "retry_in", wait)
		if !backoff.Sleep(s.stop, wait) || s.ch.IsClosed() {
			return err, false
		}
		err = s.h(ctx, m.ev)
	}
	return err, true
}

// requeue returns a delivery whose retry backoff is over to the queue.
func (s *session) requeue(d amqp.Delivery) {
	s.retries.forget(d)
	s.l.retried.Add(1)
	if err := d.Nack(false /* multiple */, true /* requeue */); err != nil {
		s.l.log.Warn("returning the message failed; the broker returns it when the channel closes",
			"message_id", d.MessageId, "err", err)
	}
}

// deliveryCount is how often the quorum queue delivered d before (its
// x-delivery-count header; absent on the first delivery). A first
// delivery counts 0 whatever its headers say: the header is the
// publisher's until the broker redelivers the message, and a client that
// republishes what it consumed from a quorum queue carries it along.
func deliveryCount(d amqp.Delivery) int {
	if !d.Redelivered {
		return 0
	}
	switch n := d.Headers["x-delivery-count"].(type) {
	case int64:
		return int(n)
	case int32:
		return int(n)
	case int:
		return n
	case int16:
		return int(n)
	case int8:
		return int(n)
	case uint8:
		return int(n)
	}
	return 0
}

// ack acknowledges d after its handler returned nil.
func (s *session) ack(log *slog.Logger, d amqp.Delivery) {
	if err := d.Ack(false /* multiple */); err != nil {
		// The channel is gone, and with it the broker's record of this
		// delivery: the message is back in the queue and comes again.
		s.l.ackFailed.Add(1)
		log.Warn("acknowledging failed; the message will be delivered again", "err", err)
		return
	}
	s.l.acked.Add(1)
}

// deadLetter moves d to the dead-letter queue: a copy with the reason in
// x-dlq-* headers, confirmed by the broker, then the original is
// acknowledged. If the copy cannot be published, the original is rejected
// instead and the broker dead-letters it itself (x-death says "rejected";
// the reason is in the log). Either way nothing is lost.
func (s *session) deadLetter(ctx context.Context, log *slog.Logger, d amqp.Delivery, name, reason string, attempts int, cause error) {
	l := s.l
	log.Warn("dead-lettering the message", "reason", reason, "err", cause, "dead_letter_queue", DeadLetterQueue(l.queue))
	if err := s.dlq.publish(ctx, d, name, reason, attempts, cause); err != nil {
		log.Warn("publishing the dead-letter copy failed; rejecting the message to the broker's dead-letter exchange", "err", err)
		if err := d.Nack(false /* multiple */, false /* requeue: dead-letter it */); err != nil {
			log.Warn("rejecting failed; the message will be delivered again", "err", err)
			return
		}
		l.deadLettered.Add(1)
		return
	}
	if err := d.Ack(false /* multiple */); err != nil {
		// The copy is stored; the original comes again and is copied a
		// second time (dead letters are at least once too).
		log.Warn("acknowledging a dead-lettered message failed; it will be delivered again", "err", err)
		return
	}
	l.deadLettered.Add(1)
}

// retries holds the deliveries waiting out a retry backoff, without
// blocking the consumer: each has a timer that hands it back on due.
type retries struct {
	due    chan amqp.Delivery
	done   chan struct{}
	timers map[uint64]*time.Timer // by delivery tag
}

func newRetries() *retries {
	return &retries{due: make(chan amqp.Delivery), done: make(chan struct{}), timers: map[uint64]*time.Timer{}}
}

// after hands d to due once wait has passed, unless stop came first.
func (r *retries) after(wait time.Duration, d amqp.Delivery) {
	r.timers[d.DeliveryTag] = time.AfterFunc(wait, func() {
		select {
		case r.due <- d:
		case <-r.done:
		}
	})
}

// forget drops the timer of a delivery taken from due.
func (r *retries) forget(d amqp.Delivery) { delete(r.timers, d.DeliveryTag) }

// stop cancels every timer; the deliveries stay unacknowledged.
func (r *retries) stop() {
	close(r.done)
	for _, t := range r.timers {
		t.Stop()
	}
}
