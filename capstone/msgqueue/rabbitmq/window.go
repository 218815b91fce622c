package rabbitmq

import (
	"context"
	"runtime"
	"time"

	"example.com/myevents/contracts"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Applying a window at once (ListenBatch). Acknowledging a window with one
// multiple-ack (acks.go) saves the broker's work; the handler's work, a
// store transaction and its commit per event, stays. With a batch handler
// the listener takes the deliveries waiting behind the one that arrived
// (up to the prefetch), checks each as handle does (a poison message is
// dead-lettered alone, at once, a skipped one noted) and hands the events
// left to the batch handler in one call: one transaction, one commit. If
// it returns nil they are noted together, and acknowledged as usual: still
// nothing before its handler returned nil. If it returns an error, nothing
// was applied, and each event goes to the one-event handler alone, with
// its own retry backoff, delivery limit and dead letter: a message that
// fails the window never holds up or poisons the others.

// take handles d, and with a batch handler the deliveries waiting behind
// it. It reports false if the delivery channel closed meanwhile (the
// deliveries taken are handled all the same).
func (s *session) take(ctx context.Context, d amqp.Delivery, deliveries <-chan amqp.Delivery) bool {
	if s.hb == nil {
		s.handle(ctx, d)
		return true
	}
	var window []decoded
	add := func(d amqp.Delivery) {
		if m, ok := s.check(ctx, d); ok {
			window = append(window, m)
		}
	}
	add(d)
	// The client hands deliveries over an unbuffered channel from a
	// goroutine of its own: one that is waiting may not be offered yet
	// because that goroutine has not run since the last receive. Let it
	// run a few times before deciding that none is waiting; then wait
	// WithBatchWait for one more.
	for n, yields := 1, 0; n < max(s.l.cfg.prefetch, 1); {
		d, ok, got := s.next(deliveries, yields == windowYields)
		switch {
		case got && !ok:
			s.applyWindow(ctx, window)
			return false
		case got:
			add(d)
			n, yields = n+1, 0
			continue
		case yields == windowYields:
			s.applyWindow(ctx, window)
			return true
		}
		runtime.Gosched()
		yields++
	}
	s.applyWindow(ctx, window)
	return true
}

// next returns the next delivery if one is waiting (got), or, when wait is
// set, if one arrives within WithBatchWait; ok is false once the channel
// closed.
func (s *session) next(deliveries <-chan amqp.Delivery, wait bool) (d amqp.Delivery, ok, got bool) {
	select {
	case d, ok = <-deliveries:
		return d, ok, true
	default:
	}
	if !wait || s.l.cfg.batchWait <= 0 {
		return d, false, false
	}
	t := time.NewTimer(s.l.cfg.batchWait)
	defer t.Stop()
	select {
	case d, ok = <-deliveries:
		return d, ok, true
	case <-t.C:
		return d, false, false
	}
}

// applyWindow applies window in stretches of events of one name (a
// msgqueue.BatchHandler applies one kind at a time: an event.created among
// bookings would otherwise send them all one by one), in delivery order.
func (s *session) applyWindow(ctx context.Context, window []decoded) {
	for len(window) > 0 {
		n := 1
		for n < len(window) && window[n].ev.EventName() == window[0].ev.EventName() {
			n++
		}
		s.applyStretch(ctx, window[:n])
		window = window[n:]
	}
}

// applyStretch hands the events of window to the batch handler in one
// call, or, if there is one event only or the call failed, to the handler
// one by one.
func (s *session) applyStretch(ctx context.Context, window []decoded) {
	if len(window) > 1 {
		evs := make([]contracts.Event, len(window))
		for i, m := range window {
			evs[i] = m.ev
		}
		err := s.hb(ctx, evs)
		if err == nil {
			s.l.batches.Add(1)
			s.l.handled.Add(int64(len(window)))
			for _, m := range window {
				s.note(m.d)
			}
			// Acknowledge at once: the broker sends the next window
			// while the handler applies this one's followers.
			s.flushAcks()
			return
		}
		// Not a warning: each message's own failure, if any, is
		// logged when its handler fails below.
		s.l.log.Debug("the window failed as a whole; handling its messages one by one", "messages", len(window), "err", err)
	}
	for _, m := range window {
		if s.stop.Err() != nil || s.ch.IsClosed() {
			return // the rest go back to the queue with the channel
		}
		s.apply(ctx, m)
	}
}

// windowYields is how often take lets the client's goroutines run, with no
// delivery offered in between, before it applies the window it has.
const windowYields = 3
