package main

// This file is the second half of the lab: the broker's side. Part 2
// publishes with one confirm wait per message, with a window (lab 03), and
// through a publisher that gathers concurrent emitters' messages; part 3
// drains a backlog into the database with a transaction and an ack per
// message, then per prefetch window.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/contracts"
)

// partPublish publishes l.n persistent event.booked per way, each counted
// only once the broker confirmed it: one confirm wait per message, a
// window of confirms, and l.callers emitters through one publisher.
func (l *lab) partPublish(ctx context.Context) error {
	fmt.Fprintf(l.out, "2. publish: %d persistent event.booked per way; a message counts once the broker has confirmed it\n", l.n)
	var all []string

	// Confirm each (lab 03): a round trip, and a disk write on the broker,
	// per message.
	ids := messageIDs("confirm-each", l.n)
	start := time.Now()
	if err := publishEach(ctx, l.ch, l.exchange, ids); err != nil {
		return err
	}
	eachRate := rate(len(ids), time.Since(start))
	all = append(all, ids...)
	fmt.Fprintf(l.out, "  confirm each (lab 03): publish, wait for its confirm, then the next: %d confirmed\n", len(ids))

	// A window (lab 03): one loop keeps up to l.window unconfirmed.
	ids = messageIDs("confirm-window", l.n)
	start = time.Now()
	if err := publishWindow(ctx, l.ch, l.exchange, ids, l.window); err != nil {
		return err
	}
	windowRate := rate(len(ids), time.Since(start))
	all = append(all, ids...)
	fmt.Fprintf(l.out, "  confirm window (lab 03): one loop, up to %d unconfirmed: %d confirmed\n", l.window, len(ids))

	// Emitters through one publisher: what a service does, where every
	// request handler emits its own event and may answer its client only
	// once that event is confirmed.
	ids = messageIDs("emitters", l.n)
	pub := &publisher{ch: l.ch, exchange: l.exchange, window: l.window, in: make(chan emission)}
	stopped := make(chan error, 1)
	go func() { stopped <- pub.run(ctx) }()
	var confirmed atomic.Int64
	emitTiming, err := callConcurrently(ctx, l.callers, len(ids), func(ctx context.Context, i int) error {
		msg, err := bookingMessage(ids[i-1], "concert-emitters")
		if err != nil {
			return err
		}
		if err := pub.emit(ctx, msg); err != nil {
			return err
		}
		confirmed.Add(1)
		return nil
	})
	close(pub.in) // no more emissions: the publisher returns once every confirm is in
	if runErr := <-stopped; runErr != nil && err == nil {
		err = runErr
	}
	if err != nil {
		return err
	}
	emitRate := rate(len(ids), emitTiming.elapsed)
	all = append(all, ids...)
	fmt.Fprintf(l.out, "  %d emitters, one publisher: it publishes what they hand it, up to %d unconfirmed, and answers each emitter on its own confirm: %d confirmed\n",
		l.callers, l.window, confirmed.Load())

	// Every confirmed message is in the queue: a confirm of a persistent
	// message routed to a durable queue comes after the queue has it.
	ready, err := waitReady(ctx, l.ch, l.queue, len(all))
	if err != nil {
		return err
	}
	fmt.Fprintf(l.out, "  queue %q holds %d messages\n", l.queue, ready)
	l.observe(stepPublished, report{ids: all})
	if _, err := l.ch.QueuePurge(l.queue, false /* no-wait */); err != nil {
		return fmt.Errorf("purging queue %s: %w", l.queue, err)
	}

	fmt.Fprintf(l.out, "  confirm each %.0f msg/s; window %.0f msg/s, %.1f times as fast; %d emitters through one publisher %.0f msg/s, %.1f times as fast\n",
		eachRate, windowRate, windowRate/eachRate, l.callers, emitRate, emitRate/eachRate)
	return nil
}

// publishEach publishes one message, waits for its confirm, then publishes
// the next.
func publishEach(ctx context.Context, ch *amqp.Channel, exchange string, ids []string) error {
	for _, id := range ids {
		msg, err := bookingMessage(id, "concert-each")
		if err != nil {
			return err
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, contracts.EventBookedName,
			false, // mandatory: the queue is bound before anything is published
			false, // immediate: RabbitMQ does not support it
			msg)
		if err != nil {
			return fmt.Errorf("publishing %s: %w", id, err)
		}
		if err := settle(ctx, dc, id); err != nil {
			return err
		}
	}
	return nil
}

// publishWindow publishes while keeping at most window messages
// unconfirmed, waiting for the oldest when the window is full.
func publishWindow(ctx context.Context, ch *amqp.Channel, exchange string, ids []string, window int) error {
	pending := make([]*amqp.DeferredConfirmation, 0, window) // oldest first
	for i, id := range ids {
		if len(pending) == window {
			if err := settle(ctx, pending[0], ids[i-window]); err != nil {
				return err
			}
			pending = pending[1:]
		}
		msg, err := bookingMessage(id, "concert-window")
		if err != nil {
			return err
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, contracts.EventBookedName,
			false, // mandatory
			false, // immediate
			msg)
		if err != nil {
			return fmt.Errorf("publishing %s: %w", id, err)
		}
		pending = append(pending, dc)
	}
	for i, dc := range pending {
		if err := settle(ctx, dc, ids[len(ids)-len(pending)+i]); err != nil {
			return err
		}
	}
	return nil
}

// settle waits for one confirm: nil for an ack, an error for a nack (a
// real publisher publishes that message again).
func settle(ctx context.Context, dc *amqp.DeferredConfirmation, id string) error {
	acked, err := dc.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("waiting for the confirm of %s: %w", id, err)
	}
	if !acked {
		return fmt.Errorf("the broker nacked %s", id)
	}
	return nil
}

// emission is one emitter's message, and where it waits for the outcome.
type emission struct {
	msg  amqp.Publishing
	done chan error // buffered (1): the publisher never waits for an emitter
}

// publisher gathers the messages of concurrent emitters onto one channel in
// confirm mode. It publishes each message as soon as it is handed over,
// with up to window unconfirmed, and answers each emitter when that
// message's own confirm arrives. The emitters' round trips overlap, and the
// broker confirms many messages with one frame and one disk write; each
// emitter still learns of its own message only once it is confirmed.
type publisher struct {
	ch       *amqp.Channel
	exchange string
	window   int
	in       chan emission
}

// emit hands msg to the publisher and waits until the broker has confirmed
// it: nil means the broker has it, on disk; an error means it may not.
func (p *publisher) emit(ctx context.Context, msg amqp.Publishing) error {
	e := emission{msg: msg, done: make(chan error, 1)}
	select {
	case p.in <- e:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-e.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run is the publisher's loop. It returns once p.in is closed and every
// message handed to it has its answer, or when ctx ends.
func (p *publisher) run(ctx context.Context) error {
	type inFlight struct {
		id   string
		dc   *amqp.DeferredConfirmation
		done chan<- error
	}
	var pending []inFlight // oldest first
	in := p.in
	for in != nil || len(pending) > 0 {
		// Take a new message only while the window has room: a full
		// window makes emitters wait, which is the backpressure.
		var take <-chan emission
		if len(pending) < p.window {
			take = in
		}
		var oldest <-chan struct{}
		if len(pending) > 0 {
			oldest = pending[0].dc.Done()
		}
		select {
		case e, ok := <-take:
			if !ok {
				in = nil // closed: finish what is in flight
				continue
			}
			dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, p.exchange, contracts.EventBookedName,
				false, // mandatory
				false, // immediate
				e.msg)
			if err != nil {
				e.done <- fmt.Errorf("publishing %s: %w", e.msg.MessageId, err)
				continue
			}
			pending = append(pending, inFlight{e.msg.MessageId, dc, e.done})
		case <-oldest:
			// Answer every emitter whose confirm is in, oldest first.
			for len(pending) > 0 && confirmedYet(pending[0].dc) {
				f := pending[0]
				pending = pending[1:]
				if f.dc.Acked() {
					f.done <- nil
				} else {
					f.done <- fmt.Errorf("the broker nacked %s", f.id)
				}
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// confirmedYet reports whether the broker has answered for dc.
func confirmedYet(dc *amqp.DeferredConfirmation) bool {
	select {
	case <-dc.Done():
		return true
	default:
		return false
	}
}

// drained is what one consumer did with its backlog.
type drained struct {
	applied, transactions, acks int
	rejected                    []string
}

// partConsume fills the queue with a backlog per way, l.n event.booked and
// one poison message in the middle, and drains it into the database: first
// with a transaction and an ack per message, then with one transaction and
// one multiple-ack per prefetch window.
func (l *lab) partConsume(ctx context.Context) error {
	fmt.Fprintf(l.out, "3. consume: a backlog of %d event.booked and 1 poison message per way, drained into SQLite with prefetch %d\n", l.n, l.prefetch)

	// One at a time, as lab 04 consumes.
	if err := l.fillBacklog(ctx, "drain-each"); err != nil {
		return err
	}
	start := time.Now()
	each, err := l.drainEach(ctx, l.n+1)
	if err != nil {
		return err
	}
	eachRate := rate(l.n+1, time.Since(start))
	fmt.Fprintf(l.out, "  one at a time: a transaction and an ack per message: %d applied in %d transactions, %d acks; rejected alone: %s\n",
		each.applied, each.transactions, each.acks, strings.Join(each.rejected, ", "))

	// Per prefetch window.
	if err := l.fillBacklog(ctx, "drain-window"); err != nil {
		return err
	}
	start = time.Now()
	windowed, err := l.drainWindows(ctx, l.n+1)
	if err != nil {
		return err
	}
	windowRate := rate(l.n+1, time.Since(start))
	fmt.Fprintf(l.out, "  per prefetch window: a transaction and one multiple-ack per window: %d applied in %d transactions, %d acks; rejected alone: %s\n",
		windowed.applied, windowed.transactions, windowed.acks, strings.Join(windowed.rejected, ", "))

	// What the broker and the database hold now.
	ready, err := waitReady(ctx, l.ch, l.queue, 0)
	if err != nil {
		return err
	}
	dead, err := waitReady(ctx, l.ch, l.queue+".dlq", 2)
	if err != nil {
		return err
	}
	var rows, sold int
	if err := l.db.QueryRowContext(ctx, `SELECT COUNT(*), (SELECT COALESCE(SUM(seats), 0) FROM sold) FROM applied`).Scan(&rows, &sold); err != nil {
		return fmt.Errorf("counting the applied messages: %w", err)
	}
	fmt.Fprintf(l.out, "  queue %q: %d messages left; dead-letter queue %q: %d; table applied: %d messages, %d seats\n",
		l.queue, ready, l.queue+".dlq", dead, rows, sold)
	l.observe(stepDrained, report{dbPath: l.dbPath})

	fmt.Fprintf(l.out, "  one at a time %.0f msg/s; per prefetch window %.0f msg/s, %.1f times as fast\n",
		eachRate, windowRate, windowRate/eachRate)
	return nil
}

// fillBacklog publishes way-0001 .. way-n, with a poison message
// (malformed JSON) named way-poison in the middle, and waits for all
// confirms.
func (l *lab) fillBacklog(ctx context.Context, way string) error {
	ids := messageIDs(way, l.n)
	half := len(ids) / 2
	if err := publishWindow(ctx, l.ch, l.exchange, ids[:half], l.window); err != nil {
		return err
	}
	dc, err := l.ch.PublishWithDeferredConfirmWithContext(ctx, l.exchange, contracts.EventBookedName,
		false, // mandatory
		false, // immediate
		amqp.Publishing{
			Headers:      amqp.Table{"x-event-name": contracts.EventBookedName},
			ContentType:  "application/json",
			DeliveryMode: amqp.Persistent,
			MessageId:    way + "-poison",
			Body:         []byte(`{"id": "b-1", "event_id": `), // the JSON stops in the middle
		})
	if err != nil {
		return fmt.Errorf("publishing %s-poison: %w", way, err)
	}
	if err := settle(ctx, dc, way+"-poison"); err != nil {
		return err
	}
	return publishWindow(ctx, l.ch, l.exchange, ids[half:], l.window)
}

// drainEach is the consumer as lab 04 wrote it: for every delivery, a
// transaction of its own, committed, then an ack of its own. Every message
// pays a commit (an fsync), and the prefetch only lines deliveries up
// behind it.
func (l *lab) drainEach(ctx context.Context, total int) (drained, error) {
	var r drained
	ch, deliveries, err := consume(l.conn, l.queue, l.prefetch)
	if err != nil {
		return r, err
	}
	defer ch.Close() // the broker requeues whatever is still unacked
	for settled := 0; settled < total; settled++ {
		d, err := next(ctx, deliveries)
		if err != nil {
			return r, err
		}
		ev, err := decodeBooking(d)
		if err != nil {
			// Poison: no transaction can take it. Reject it without
			// requeue: the queue dead-letters it (lab 04).
			if err := d.Reject(false /* requeue */); err != nil {
				return r, fmt.Errorf("rejecting %s: %w", d.MessageId, err)
			}
			r.rejected = append(r.rejected, d.MessageId)
			continue
		}
		tx, err := l.db.BeginTx(ctx, nil)
		if err != nil {
			return r, fmt.Errorf("beginning the transaction of %s: %w", d.MessageId, err)
		}
		if err := apply(ctx, tx, d.MessageId, ev); err != nil {
			_ = tx.Rollback()
			return r, err
		}
		l.observe(stepBeforeCommit, report{ids: []string{d.MessageId}, last: settled == total-1})
		if err := tx.Commit(); err != nil {
			return r, fmt.Errorf("committing %s: %w", d.MessageId, err)
		}
		r.transactions++
		r.applied++
		// Ack only now that the message is durable in the database.
		if err := d.Ack(false /* multiple */); err != nil {
			return r, fmt.Errorf("acking %s: %w", d.MessageId, err)
		}
		r.acks++
	}
	return r, nil
}

// drainWindows takes up to a prefetch window of deliveries at a time,
// applies them in one transaction, and settles them after the commit: each
// poison message rejected alone, then one Ack(multiple=true) for all the
// rest.
func (l *lab) drainWindows(ctx context.Context, total int) (drained, error) {
	var r drained
	ch, deliveries, err := consume(l.conn, l.queue, l.prefetch)
	if err != nil {
		return r, err
	}
	defer ch.Close()
	for settled := 0; settled < total; {
		// Take what the broker has sent, up to the prefetch, waiting at
		// most l.wait after the first for more.
		window, err := collect(ctx, deliveries, l.prefetch, l.wait)
		if err != nil {
			return r, err
		}
		settled += len(window)

		// Set the poison aside: it must not fail its neighbours.
		var good, poison []amqp.Delivery
		var events []*contracts.EventBooked
		for _, d := range window {
			ev, err := decodeBooking(d)
			if err != nil {
				poison = append(poison, d)
				continue
			}
			good = append(good, d)
			events = append(events, ev)
		}
		// Apply every processable delivery in one transaction. A window
		// of poison alone has nothing to store, and costs no commit.
		if len(good) > 0 {
			tx, err := l.db.BeginTx(ctx, nil)
			if err != nil {
				return r, fmt.Errorf("beginning a transaction for %d deliveries: %w", len(good), err)
			}
			ids := make([]string, len(good))
			for i, d := range good {
				if err := apply(ctx, tx, d.MessageId, events[i]); err != nil {
					_ = tx.Rollback()
					return r, err
				}
				ids[i] = d.MessageId
			}
			l.observe(stepBeforeCommit, report{ids: ids, last: settled == total})
			if err := tx.Commit(); err != nil {
				return r, fmt.Errorf("committing %d deliveries: %w", len(good), err)
			}
			r.transactions++
			r.applied += len(good)
		}

		// Settle the window, now that it is durable. Reject the poison
		// first, each alone: the multiple ack below settles every
		// unsettled delivery of this channel up to its tag, and would
		// settle a poison message too, as done.
		for _, d := range poison {
			if err := d.Reject(false /* requeue */); err != nil {
				return r, fmt.Errorf("rejecting %s: %w", d.MessageId, err)
			}
			r.rejected = append(r.rejected, d.MessageId)
		}
		// One ack for the rest: the highest tag, multiple=true.
		if len(good) > 0 {
			if err := good[len(good)-1].Ack(true /* multiple */); err != nil {
				return r, fmt.Errorf("acking %d deliveries up to %s: %w", len(good), good[len(good)-1].MessageId, err)
			}
			r.acks++
		}
	}
	return r, nil
}

// collect waits for one delivery, then takes more until it holds max or
// wait has passed since the first. Deliveries come in tag order, so the
// last one holds the window's highest tag.
func collect(ctx context.Context, deliveries <-chan amqp.Delivery, max int, wait time.Duration) ([]amqp.Delivery, error) {
	first, err := next(ctx, deliveries)
	if err != nil {
		return nil, err
	}
	window := []amqp.Delivery{first}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for len(window) < max {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return nil, errors.New("the consumer's channel closed")
			}
			window = append(window, d)
		case <-deadline.C:
			return window, nil
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for deliveries: %w", ctx.Err())
		}
	}
	return window, nil
}

// apply stores one event.booked, once: a message seen before (a
// redelivery) changes nothing.
func apply(ctx context.Context, tx *sql.Tx, messageID string, ev *contracts.EventBooked) error {
	res, err := tx.ExecContext(ctx,
		`INSERT INTO applied (message_id, concert_id, seats) VALUES (?, ?, ?) ON CONFLICT (message_id) DO NOTHING`,
		messageID, ev.EventID, ev.Seats)
	if err != nil {
		return fmt.Errorf("applying %s: %w", messageID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("applying %s: %w", messageID, err)
	}
	if n == 0 {
		return nil // seen before: a redelivery changes nothing
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO sold (concert_id, seats) VALUES (?, ?) ON CONFLICT (concert_id) DO UPDATE SET seats = seats + excluded.seats`,
		ev.EventID, ev.Seats); err != nil {
		return fmt.Errorf("counting the seats of %s: %w", messageID, err)
	}
	return nil
}

// decodeBooking reads an event.booked delivery, or says why it cannot.
func decodeBooking(d amqp.Delivery) (*contracts.EventBooked, error) {
	if name, _ := d.Headers["x-event-name"].(string); name != contracts.EventBookedName {
		return nil, fmt.Errorf("x-event-name is %q, not %s", name, contracts.EventBookedName)
	}
	ev, err := contracts.Decode(contracts.EventBookedName, d.Body)
	if err != nil {
		return nil, err
	}
	return ev.(*contracts.EventBooked), nil
}

// bookingMessage is the persistent event.booked message of one booking.
func bookingMessage(id, concert string) (amqp.Publishing, error) {
	body, err := json.Marshal(contracts.EventBooked{
		ID: id, EventID: concert, UserID: "user-" + id, Seats: seatsPerBooking,
		Date: time.Date(2026, 11, 27, 20, 0, 0, 0, time.UTC),
	})
	if err != nil {
		return amqp.Publishing{}, fmt.Errorf("encoding %s: %w", id, err)
	}
	return amqp.Publishing{
		Headers:      amqp.Table{"x-event-name": contracts.EventBookedName},
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent, // a durable queue writes it to disk before the confirm
		MessageId:    id,
		Body:         body,
	}, nil
}

// messageIDs returns way-0001 .. way-n.
func messageIDs(way string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%04d", way, i+1)
	}
	return ids
}

// consume opens a channel with the given prefetch and consumes queue on
// it with manual acks.
func consume(conn *amqp.Connection, queue string, prefetch int) (*amqp.Channel, <-chan amqp.Delivery, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, nil, fmt.Errorf("opening a consumer channel: %w", err)
	}
	// The broker sends at most prefetch unacked deliveries: the most a
	// window can hold.
	if err := ch.Qos(prefetch, 0 /* prefetch size: no byte limit */, false /* global */); err != nil {
		_ = ch.Close()
		return nil, nil, fmt.Errorf("setting prefetch %d: %w", prefetch, err)
	}
	// Consume, not ConsumeWithContext: the latter cancels the consumer from
	// a goroutine of its own when ctx ends, racing our Close (lab 04).
	deliveries, err := ch.Consume(queue,
		"",    // consumer tag: let the library pick one
		false, // auto-ack: no, ack after the commit
		false, // exclusive
		false, // no-local
		false, // no-wait
		nil,   // args
	)
	if err != nil {
		_ = ch.Close()
		return nil, nil, fmt.Errorf("consuming queue %s: %w", queue, err)
	}
	return ch, deliveries, nil
}

// next waits for the next delivery, the end of ctx, or waitTimeout.
func next(ctx context.Context, deliveries <-chan amqp.Delivery) (amqp.Delivery, error) {
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	select {
	case d, ok := <-deliveries:
		if !ok {
			return amqp.Delivery{}, errors.New("the consumer's channel closed")
		}
		return d, nil
	case <-ctx.Done():
		return amqp.Delivery{}, fmt.Errorf("waiting for a delivery: %w", ctx.Err())
	case <-timeout.C:
		return amqp.Delivery{}, fmt.Errorf("no delivery within %v", waitTimeout)
	}
}

// waitReady waits until queue holds want ready messages (or waitTimeout
// passes) and returns how many it holds.
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

// declareTopology declares the durable topic exchange, the dead-letter
// exchange and queue, and the queue bound for event.booked, and empties
// both queues of what an earlier -keep run (or a crash) left.
func declareTopology(ch *amqp.Channel, exchange, queue string) error {
	dlx, dlq := queue+".dlx", queue+".dlq"
	if err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic,
		true,  // durable
		false, // auto-delete
		false, // internal
		false, // no-wait
		nil,   // args
	); err != nil {
		return fmt.Errorf("declaring exchange %s: %w", exchange, err)
	}
	if err := ch.ExchangeDeclare(dlx, amqp.ExchangeFanout,
		true,  // durable
		true,  // auto-delete: goes away once its queue is gone
		false, // internal
		false, // no-wait
		nil,   // args
	); err != nil {
		return fmt.Errorf("declaring dead-letter exchange %s: %w", dlx, err)
	}
	// Both queues are classic queues, said explicitly: a broker may
	// default to quorum queues, which confirm and fsync differently.
	for _, q := range []struct {
		name string
		args amqp.Table
	}{
		{dlq, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeClassic, "x-expires": queueTTL.Milliseconds()}},
		{queue, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeClassic, "x-expires": queueTTL.Milliseconds(), "x-dead-letter-exchange": dlx}},
	} {
		if _, err := ch.QueueDeclare(q.name,
			true,  // durable: persistent messages in it are written to disk
			false, // auto-delete
			false, // exclusive
			false, // no-wait
			q.args,
		); err != nil {
			return fmt.Errorf("declaring queue %s: %w", q.name, err)
		}
		if _, err := ch.QueuePurge(q.name, false /* no-wait */); err != nil {
			return fmt.Errorf("purging queue %s: %w", q.name, err)
		}
	}
	if err := ch.QueueBind(dlq, "", dlx, false /* no-wait */, nil /* args */); err != nil {
		return fmt.Errorf("binding queue %s to %s: %w", dlq, dlx, err)
	}
	if err := ch.QueueBind(queue, contracts.EventBookedName, exchange, false /* no-wait */, nil /* args */); err != nil {
		return fmt.Errorf("binding queue %s to %s: %w", queue, exchange, err)
	}
	return nil
}

// deleteTopology deletes the queue, the dead-letter queue and exchange,
// then the exchange if no queue is bound to it any more (inUse reports
// that the broker refused for that reason), on a channel of its own, so
// that it works even when another channel was closed by an error.
func deleteTopology(conn *amqp.Connection, queue, exchange string) (inUse bool, err error) {
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("opening a channel to clean up: %w", err)
	}
	defer ch.Close()
	for _, q := range []string{queue, queue + ".dlq"} {
		if _, err := ch.QueueDelete(q,
			false, // if-unused
			false, // if-empty
			false, // no-wait
		); err != nil {
			return false, fmt.Errorf("deleting queue %s: %w", q, err)
		}
	}
	if err := ch.ExchangeDelete(queue+".dlx", false /* if-unused */, false /* no-wait */); err != nil {
		return false, fmt.Errorf("deleting exchange %s: %w", queue+".dlx", err)
	}
	err = ch.ExchangeDelete(exchange, true /* if-unused */, false /* no-wait */)
	var amqpErr *amqp.Error
	if errors.As(err, &amqpErr) && amqpErr.Code == amqp.PreconditionFailed {
		return true, nil // the refusal closed ch; the deferred Close is harmless
	}
	if err != nil {
		return false, fmt.Errorf("deleting exchange %s: %w", exchange, err)
	}
	return false, nil
}
