package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labkit"
)

// TestExerciseConsumeN checks the lab's exercise, consumeN, against the
// real broker. Five messages wait in a queue with a dead-letter exchange:
// three valid events and two poison messages. A first consumer crashes (its
// connection closes) while it processes ok-2; a second one finishes the
// queue. Then the broker must hold the poison messages in the dead-letter
// queue, once each, and nothing else anywhere, and ok-2 must have come back.
// While ok-2 is being processed, a second consumer started on consumeN's
// channel shows whether the prefetch is per consumer, as it should be, or
// shared by the whole channel (global).
func TestExerciseConsumeN(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	queue := brokertest.Name(t, "lab04")
	dlx, dlq, probe := queue+".dlx", queue+".dlq", queue+".probe"
	ch := testChannel(t, rabbit.URL)
	t.Cleanup(func() {
		cleanup := testChannel(t, rabbit.URL)
		for _, q := range []string{queue, dlq, probe} {
			_, _ = cleanup.QueueDelete(q, false, false, false)
		}
		_ = cleanup.ExchangeDelete(dlx, false, false)
	})
	declareWithDeadLetters(t, ch, queue, dlx, dlq)
	if _, err := ch.QueueDeclare(probe,
		false, // durable
		false, // auto-delete
		false, // exclusive: consumeN's channel consumes it
		false, // no-wait
		amqp.Table{"x-expires": queueTTL.Milliseconds()},
	); err != nil {
		t.Fatalf("declaring %s: %v", probe, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	publishTo(ctx, t, ch, probe, "probe-1", contracts.EventCreatedName, eventBody("probe-1"))
	for _, m := range []struct {
		id, header string
		body       []byte
	}{
		{"ok-1", contracts.EventCreatedName, eventBody("ok-1")},
		{"bad-1", contracts.EventCreatedName, poisonMalformed},
		{"ok-2", contracts.EventCreatedName, eventBody("ok-2")},
		{"bad-2", "", poisonNoHeader},
		{"ok-3", contracts.EventCreatedName, eventBody("ok-3")},
	} {
		publishTo(ctx, t, ch, queue, m.id, m.header, m.body)
	}

	// process is the lab's process, plus a log of every delivery and, the
	// first time ok-2 arrives, a crash: the connection closes before
	// consumeN can settle it. Before the crash, the broker's counts show
	// whether consumeN holds no more than its prefetch of 2, and a second
	// consumer on its channel whether that prefetch is per consumer.
	var (
		mu        sync.Mutex
		delivered []seen
		crashed   bool
		crashConn *amqp.Connection
		atCrash   counts
		noCtl     error
		shared    error
	)
	proc := func(d amqp.Delivery) error {
		mu.Lock()
		delivered = append(delivered, seen{id: d.MessageId, redelivered: d.Redelivered})
		crash := d.MessageId == "ok-2" && !crashed
		crashed = crashed || crash
		mu.Unlock()
		if crash {
			atCrash, noCtl = waitCounts(rabbit, queue, counts{ready: 1, unacked: 2})
			shared = perConsumerPrefetch(d, probe)
			_ = crashConn.Close()
			return nil // processed, but the ack can no longer reach the broker
		}
		_, err := process(d)
		return err
	}

	// The first consumer, which crashes during ok-2.
	crashConn = dial(t, rabbit.URL)
	_, err := consumeN(ctx, crashConn, queue, 5, 2, proc)
	if errors.Is(err, labkit.ErrTODO) {
		t.Fatal(err)
	}
	if !crashed {
		returned, why := "no error", ""
		if err != nil {
			returned = fmt.Sprintf("the error %q", err.Error())
			if len(delivered) > 0 {
				why = fmt.Sprintf("; if process failed on %s, that is a poison message, not a failure of consumeN: reject it without requeue and go on to the next delivery", delivered[len(delivered)-1].id)
			}
		}
		t.Fatalf("consumeN returned %s before ok-2 reached process; deliveries that reached process, in order: %s%s", returned, describe(delivered), why)
	}
	if err == nil {
		t.Errorf("consumeN returned no error, though its connection closed while ok-2 was being processed: its ack cannot have reached the broker; return the error of Ack (or of the closed delivery channel)")
	}
	switch {
	case errors.Is(noCtl, brokertest.ErrNoCtl):
		t.Logf("rabbitmqctl is not available, so the prefetch is not checked: %v", noCtl)
	case noCtl != nil:
		why := "ok-1 acked, bad-1 rejected, ok-2 and bad-2 delivered and unacked (prefetch 2), ok-3 ready"
		switch {
		case atCrash.unacked == 0:
			why = "ok-2 itself must be unacked while it is being processed: was it acked before processing, or consumed with auto-ack?"
		case atCrash.unacked > 2:
			why = "no more than the prefetch of 2 may be unacked: set it with ch.Qos before Consume"
		}
		t.Errorf("while ok-2 was being processed the broker counted %d ready and %d unacked in queue %s; want 1 ready, 2 unacked: %s", atCrash.ready, atCrash.unacked, queue, why)
	}
	if shared != nil {
		t.Errorf("while ok-2 was being processed, %v", shared)
	}

	// The second consumer finishes the queue: ok-2 again, bad-2, ok-3.
	results, err := consumeN(ctx, dial(t, rabbit.URL), queue, 3, 2, proc)
	if err != nil {
		t.Errorf("the second consumeN: %v", err)
	}

	// The broker's side: the dead-letter queue holds the poison messages,
	// once each and rejected; the queue itself holds nothing. Then a
	// message published now stays ready: nobody consumes any more.
	_, _ = waitReady(ctx, ch, dlq, 2)
	var deadIDs []string
	for _, d := range getAll(t, ch, dlq) {
		deadIDs = append(deadIDs, d.MessageId)
		if got := firstDeath(d); got.reason != "rejected" || got.count != 1 {
			t.Errorf("dead letter %s has x-death %+v; want reason rejected, count 1: reject it once, without requeue", d.MessageId, got)
		}
	}
	var left []string
	for _, d := range getAll(t, ch, queue) {
		left = append(left, d.MessageId)
	}
	if !brokertest.CheckIDs(t, "dead-letter queue "+dlq, deadIDs, []string{"bad-1", "bad-2"}) {
		for _, id := range []string{"bad-1", "bad-2"} {
			n := timesDelivered(delivered, id)
			switch {
			case slices.Contains(deadIDs, id):
			case n > 1:
				t.Errorf("%s reached process %d times: rejecting (or nacking) with requeue hands it straight back; reject it without requeue", id, n)
			case slices.Contains(left, id):
				t.Errorf("%s is still in queue %s, not dead-lettered: reject it without requeue", id, queue)
			default:
				t.Errorf("%s is gone: neither in queue %s nor in the dead-letter queue; was it acked (or consumed with auto-ack) instead of rejected?", id, queue)
			}
		}
		t.Logf("deliveries that reached process, in order: %s", describe(delivered))
	}
	if len(left) > 0 {
		t.Errorf("queue %s still holds %v after both consumers: every delivery must be acked (processed) or rejected (poison)", queue, left)
	}
	publishTo(ctx, t, ch, queue, "later-1", contracts.EventCreatedName, eventBody("later-1"))
	if ready, _ := waitReady(ctx, ch, queue, 1); ready != 1 {
		t.Errorf("later-1, published after consumeN returned, is not ready in queue %s: a consumer took it; close the consumer's channel before returning", queue)
	}

	// ok-2 came back after the crash, marked redelivered.
	var again []seen
	for _, s := range delivered {
		if s.id == "ok-2" {
			again = append(again, s)
		}
	}
	if len(again) != 2 || !again[1].redelivered {
		t.Errorf("ok-2 reached process as %s; want twice, the second time redelivered: the first consumer crashed before its ack, so the broker delivers it again (unless it was acked before processing)", describe(again))
	}

	// What the second consumeN reports, in order.
	want := []string{"ok-2 processed", "bad-2 rejected", "ok-3 processed"}
	var got []string
	for _, r := range results {
		s := r.id + " processed"
		if r.err != nil {
			s = r.id + " rejected"
		}
		got = append(got, s)
	}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("the second consumeN reports %v; want %v", got, want)
	}
	if len(results) > 0 && results[0].id == "ok-2" && !results[0].redelivered {
		t.Errorf("the second consumeN reports ok-2 as not redelivered; the broker flagged it (Delivery.Redelivered)")
	}
}

// timesDelivered counts the deliveries of one message ID.
func timesDelivered(log []seen, id string) int {
	n := 0
	for _, s := range log {
		if s.id == id {
			n++
		}
	}
	return n
}

// describe lists deliveries as "ok-1, ok-2 (redelivered)".
func describe(log []seen) string {
	var parts []string
	for _, s := range log {
		if s.redelivered {
			parts = append(parts, s.id+" (redelivered)")
		} else {
			parts = append(parts, s.id)
		}
	}
	if len(parts) == 0 {
		return "never"
	}
	return strings.Join(parts, ", ")
}

// declareWithDeadLetters declares queue, with x-dead-letter-exchange dlx,
// and the fanout dlx with its queue dlq.
func declareWithDeadLetters(t *testing.T, ch *amqp.Channel, queue, dlx, dlq string) {
	t.Helper()
	if err := ch.ExchangeDeclare(dlx, amqp.ExchangeFanout,
		false, // durable
		true,  // auto-delete
		false, // internal
		false, // no-wait
		nil,   // args
	); err != nil {
		t.Fatalf("declaring %s: %v", dlx, err)
	}
	for _, q := range []struct {
		name string
		args amqp.Table
	}{
		{dlq, amqp.Table{"x-expires": queueTTL.Milliseconds()}},
		{queue, amqp.Table{"x-dead-letter-exchange": dlx, "x-expires": queueTTL.Milliseconds()}},
	} {
		if _, err := ch.QueueDeclare(q.name,
			false, // durable
			false, // auto-delete
			false, // exclusive: other connections consume it
			false, // no-wait
			q.args,
		); err != nil {
			t.Fatalf("declaring %s: %v", q.name, err)
		}
	}
	if err := ch.QueueBind(dlq, "", dlx, false /* no-wait */, nil); err != nil {
		t.Fatalf("binding %s to %s: %v", dlq, dlx, err)
	}
}

// publishTo publishes one persistent message straight to queue (through
// the default exchange) and waits for its confirm. An empty header sends
// no x-event-name.
func publishTo(ctx context.Context, t *testing.T, ch *amqp.Channel, queue, id, header string, body []byte) {
	t.Helper()
	if err := ch.Confirm(false /* no-wait */); err != nil {
		t.Fatalf("enabling confirms: %v", err)
	}
	var headers amqp.Table
	if header != "" {
		headers = amqp.Table{"x-event-name": header}
	}
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue,
		false, // mandatory
		false, // immediate
		amqp.Publishing{Headers: headers, ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: id, Body: body})
	if err != nil {
		t.Fatalf("publishing %s: %v", id, err)
	}
	if acked, err := dc.WaitContext(ctx); err != nil || !acked {
		t.Fatalf("confirm of %s: acked %t, %v", id, acked, err)
	}
}

// getAll takes every message of a queue.
func getAll(t *testing.T, ch *amqp.Channel, queue string) []amqp.Delivery {
	t.Helper()
	var all []amqp.Delivery
	for {
		d, ok, err := ch.Get(queue, true /* auto-ack */)
		if err != nil {
			t.Fatalf("reading queue %s: %v", queue, err)
		}
		if !ok {
			return all
		}
		all = append(all, d)
	}
}

// dial opens a connection of the test's own, closed when the test ends.
func dial(t *testing.T, rawURL string) *amqp.Connection {
	t.Helper()
	conn, err := amqp.Dial(rawURL)
	if err != nil {
		t.Fatalf("dialing %s: %v", brokertest.Redact(rawURL), err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// perConsumerPrefetch starts a second consumer, on queue, on the channel
// d arrived on, while that channel's first consumer holds its prefetch of
// unacked deliveries, and waits for one delivery. With a per-consumer
// prefetch (global=false) the new consumer has a limit of its own, and the
// message waiting in queue comes at once; with one limit for the whole
// channel (global=true) it is already used up, and nothing comes. The
// error says which; the delivery goes back to queue when the connection
// closes.
func perConsumerPrefetch(d amqp.Delivery, queue string) error {
	ch, ok := d.Acknowledger.(*amqp.Channel)
	if !ok {
		return fmt.Errorf("the delivery of %s did not come from an *amqp.Channel but from %T", d.MessageId, d.Acknowledger)
	}
	probe, err := ch.Consume(queue,
		"",    // consumer tag
		false, // auto-ack: off, so the prefetch applies
		false, // exclusive
		false, // no-local
		false, // no-wait
		nil,   // args
	)
	if err != nil {
		return fmt.Errorf("a second consumer on consumeN's channel could not start: %w", err)
	}
	select {
	case _, ok := <-probe:
		if !ok {
			return errors.New("consumeN's channel closed when a second consumer started on it")
		}
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("a second consumer started on consumeN's channel got nothing within 5 s from queue %s, which holds a message: the prefetch is shared by the whole channel (global); set it per consumer with ch.Qos(prefetch, 0, false): the per-channel limit is deprecated, and RabbitMQ 4.3 refuses it by default", queue)
	}
}

// waitCounts asks rabbitmqctl for the queue's counts until they are want,
// for up to five seconds, and returns the last ones. The error is
// brokertest.ErrNoCtl without rabbitmqctl, or says the counts never matched.
func waitCounts(rabbit *brokertest.RabbitMQ, queue string, want counts) (counts, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := queueCounts(rabbit, queue)
		switch {
		case err != nil:
			return got, err
		case got == want:
			return got, nil
		case time.Now().After(deadline):
			return got, fmt.Errorf("the counts did not reach %+v within 5 s", want)
		}
	}
}
