package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labkit"
)

// TestExerciseDeliverDropsStaleDeliveries checks deliver, the first half
// of the lab's exercise, with a delivery whose channel closed before it
// was handed over: it must not reach the handler (its tag means nothing on
// any other channel), and the broker must hold the message again, ready
// and flagged redelivered.
func TestExerciseDeliverDropsStaleDeliveries(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	exchange, queue := testQueue(t, rabbit.URL)
	publishIDs(t, rabbit.URL, exchange, "stale-1")
	ch, deliveries := testConsumer(t, rabbit.URL, queue, 1)
	d := next(t, deliveries)
	if err := ch.Close(); err != nil { // the channel dies with stale-1 unacked
		t.Fatalf("closing the channel: %v", err)
	}

	rec := &recorder{}
	c := &consumer{handle: rec.handle}
	err := c.deliver(context.Background(), ch, d)
	if errors.Is(err, labkit.ErrTODO) {
		t.Fatal(err)
	}
	if got := rec.ids(); len(got) > 0 {
		t.Errorf("deliver handed %v to the handler although its channel had closed: drop a delivery of a closed channel unprocessed (ch.IsClosed)", got)
	}
	again := getAll(t, rabbit.URL, queue)
	if len(again) != 1 || again[0].MessageId != "stale-1" || !again[0].Redelivered {
		t.Errorf("after deliver, the broker holds %s; want stale-1 back in the queue, redelivered", describe(again))
	}
}

// TestExerciseDeliverAcksOnlyAfterProcessing checks that deliver acks on
// the delivery's own channel after the handler returned. ok-1 is processed
// and acked; poison-1, which the handler cannot process, is rejected
// without requeue; closing the channel afterwards must give nothing back.
// Then ok-2's channel closes while the handler works on it: the message
// must come back, and deliver must return the failed ack's error.
func TestExerciseDeliverAcksOnlyAfterProcessing(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	exchange, queue := testQueue(t, rabbit.URL)
	publishIDs(t, rabbit.URL, exchange, "ok-1", "poison-1")
	ch, deliveries := testConsumer(t, rabbit.URL, queue, 2)
	rec := &recorder{}
	c := &consumer{handle: func(ctx context.Context, d amqp.Delivery) error {
		if d.MessageId == "poison-1" {
			return errors.New("cannot process poison-1")
		}
		return rec.handle(ctx, d)
	}}
	for range 2 {
		d := next(t, deliveries)
		err := c.deliver(context.Background(), ch, d)
		if errors.Is(err, labkit.ErrTODO) {
			t.Fatal(err)
		}
		if err != nil {
			t.Errorf("deliver(%s) on an open channel: %v", d.MessageId, err)
		}
	}
	if got := rec.ids(); !slices.Equal(got, []string{"ok-1"}) {
		t.Errorf("the handler processed %v, want [ok-1]", got)
	}
	if err := ch.Close(); err != nil {
		t.Fatalf("closing the channel: %v", err)
	}
	for _, d := range getAll(t, rabbit.URL, queue) {
		switch d.MessageId {
		case "ok-1":
			t.Errorf("ok-1 came back to the queue when its channel closed: deliver processed it but did not ack it (d.Ack)")
		case "poison-1":
			t.Errorf("poison-1, which the handler could not process, came back to the queue: reject it without requeue (d.Reject(false))")
		default:
			t.Errorf("%s is in the queue; the test published nothing of that name", d.MessageId)
		}
	}

	// The channel dies while the handler works on ok-2.
	publishIDs(t, rabbit.URL, exchange, "ok-2")
	ch2, deliveries2 := testConsumer(t, rabbit.URL, queue, 1)
	c.handle = func(_ context.Context, d amqp.Delivery) error {
		return ch2.Close()
	}
	d := next(t, deliveries2)
	if err := c.deliver(context.Background(), ch2, d); err == nil {
		t.Errorf("deliver returned nil although its channel closed while ok-2 was processed, so the ack cannot have reached the broker: return the ack's error, the session is over")
	}
	if again := getAll(t, rabbit.URL, queue); len(again) != 1 || again[0].MessageId != "ok-2" {
		t.Errorf("after its channel closed during processing, the broker holds %s; want ok-2 back in the queue: ack only after the handler returned", describe(again))
	}
}

// TestExerciseSessionDeliversAndDrains runs one session of the consumer
// (the lab's session, which hands each delivery to deliver) on ten
// messages, then drains it: it must report done, and the broker must have
// nothing left, ready or unacked, once its connection is gone.
func TestExerciseSessionDeliversAndDrains(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	exchange, queue := testQueue(t, rabbit.URL)
	ids := idRange("s", 10)
	publishIDs(t, rabbit.URL, exchange, ids...)
	rec := &recorder{}
	c := &consumer{url: rabbit.URL, queue: queue, name: brokertest.Name(t, "conn"), prefetch: 3,
		handle: rec.handle, drain: make(chan struct{}), lost: make(chan *amqp.Error, 1)}
	type ended struct {
		done, consumed bool
		err            error
	}
	result := make(chan ended, 1)
	go func() {
		done, consumed, err := c.session(context.Background(), 0)
		result <- ended{done, consumed, err}
	}()
	var end ended
	brokertest.Eventually(t, 15*time.Second, func() error {
		select {
		case end = <-result:
			if errors.Is(end.err, labkit.ErrTODO) {
				t.Fatal(end.err)
			}
			t.Fatalf("the session ended before it was drained: done %v, %v", end.done, end.err)
		default:
		}
		if got := rec.ids(); len(got) < len(ids) {
			return fmt.Errorf("the handler processed %d of %d messages", len(got), len(ids))
		}
		return nil
	})
	close(c.drain)
	select {
	case end = <-result:
	case <-time.After(15 * time.Second):
		t.Fatal("the session did not end within 15 s of the drain")
	}
	if !end.done || !end.consumed || end.err != nil {
		t.Errorf("the drained session returned done %v, consumed %v, %v; want true, true, nil", end.done, end.consumed, end.err)
	}
	brokertest.CheckIDs(t, "processed", rec.ids(), ids)
	if again := getAll(t, rabbit.URL, queue); len(again) > 0 {
		t.Errorf("after the session, the broker gave back %s: deliver did not ack them", describe(again))
	}
}

// TestExerciseConsumerOutlivesItsConnection checks run, the reconnect
// loop, with an outage: the broker closes the consumer's connection
// (rabbitmqctl close_connection, aimed at this test's connection only)
// while the handler holds its 10th message, processed and not acked. The
// consumer must reconnect once, process the held message again, take the
// 20 messages published after the outage, and leave nothing behind:
// every message processed, the queue empty, no connection of its name.
func TestExerciseConsumerOutlivesItsConnection(t *testing.T) {
	t.Parallel()
	rabbit := needCtl(t)
	exchange, queue := testQueue(t, rabbit.URL)
	before, after := idRange("before", 20), idRange("after", 20)
	publishIDs(t, rabbit.URL, exchange, before...)
	app := &bookings{holdAt: 10, holding: make(chan string, 1), release: make(chan struct{}), calls: map[string]int{}}
	c := &consumer{url: rabbit.URL, queue: queue, name: brokertest.Name(t, "conn"), prefetch: 5,
		handle: app.handle, drain: make(chan struct{}), lost: make(chan *amqp.Error, 4)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- c.run(ctx) }()

	var held string
	select {
	case held = <-app.holding:
	case err := <-stopped:
		if errors.Is(err, labkit.ErrTODO) {
			t.Fatal(err)
		}
		t.Fatalf("run returned %v before the consumer processed 10 messages; its last session ended with: %v", err, c.stats().lastErr)
	case <-time.After(30 * time.Second):
		t.Fatalf("the consumer did not process 10 messages within 30 s; its last session ended with: %v", c.stats().lastErr)
	}
	if err := closeConnections(ctx, rabbit.Ctl, rabbit.URL, c.name); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.lost:
	case <-time.After(15 * time.Second):
		t.Fatal("the consumer's connection did not report the outage within 15 s")
	}
	close(app.release)
	publishIDs(t, rabbit.URL, exchange, after...)

	all := append(slices.Clone(before), after...)
	brokertest.Eventually(t, 30*time.Second, func() error {
		if err := ranOut(stopped); err != nil {
			t.Fatalf("run returned after the outage, before it was drained: %v. A reconnect loop starts a new session (after a wait) whenever one ends, until it is drained or ctx ends", err)
		}
		if m := missing(all, app.snapshot()); len(m) > 0 {
			s := c.stats()
			return fmt.Errorf("%d of %d messages not processed (%v); reconnects %d; the last session ended with: %v", len(m), len(all), m, s.reconnects, s.lastErr)
		}
		return nil
	})
	close(c.drain)
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("the drained consumer's run returned %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return within 15 s of the drain")
	}

	calls, s := app.snapshot(), c.stats()
	brokertest.CheckIDs(t, "processed", slices.Collect(maps.Keys(calls)), all)
	if calls[held] != 2 {
		t.Errorf("%s, held over the outage, was processed %d times; want 2: its ack could not reach the broker, so it must come again", held, calls[held])
	}
	if s.reconnects != 1 || s.ackRefused != 1 {
		t.Errorf("the consumer reconnected %d times and had %d acks refused; want 1 and 1 (one outage, the held message's ack)", s.reconnects, s.ackRefused)
	}
	if n := totalMessages(t, rabbit, queue); n != 0 {
		t.Errorf("rabbitmqctl counts %d messages in the queue (ready and unacked), want 0", n)
	}
	noConnections(t, rabbit, c.name)
}

// TestExerciseConsumerStopsOnCtrlC cancels run's context while it
// consumes: run returns the cancellation within 5 s, and the broker no
// longer counts a consumer on the queue.
func TestExerciseConsumerStopsOnCtrlC(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	_, queue := testQueue(t, rabbit.URL)
	c := &consumer{url: rabbit.URL, queue: queue, name: brokertest.Name(t, "conn"), prefetch: 1,
		handle: (&recorder{}).handle, drain: make(chan struct{}), lost: make(chan *amqp.Error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- c.run(ctx) }()
	brokertest.Eventually(t, 15*time.Second, func() error {
		if err := ranOut(stopped); errors.Is(err, labkit.ErrTODO) {
			t.Fatal(err)
		} else if err != nil {
			t.Fatalf("run returned before the cancel: %v", err)
		}
		if q := passive(t, rabbit.URL, queue); q.Consumers != 1 {
			return fmt.Errorf("the queue has %d consumers, want 1", q.Consumers)
		}
		return nil
	})
	cancel()
	select {
	case err := <-stopped:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("run after the cancel returned %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return within 5 s of the cancel")
	}
	brokertest.Eventually(t, 10*time.Second, func() error {
		if q := passive(t, rabbit.URL, queue); q.Consumers != 0 {
			return fmt.Errorf("after run returned, the queue still has %d consumers", q.Consumers)
		}
		return nil
	})
}

// TestExerciseConsumerWaitsBetweenSessions checks run's waits against a
// broker that is down: an address that accepts every connection and
// closes it at once, so each session fails as it dials. For 2 s, run must
// wait between sessions, 100 ms at first and twice as long each time
// (100, 200, 400, 800 ms, plus up to a quarter of jitter): 3 to 5 dials.
// A loop that dials again without waiting dials thousands of times, and
// one that never doubles its wait (or starts it over after a session that
// never consumed) 15 or more.
func TestExerciseConsumerWaitsBetweenSessions(t *testing.T) {
	t.Parallel()
	down, dials := refusingBroker(t)
	c := &consumer{url: "amqp://guest:guest@" + down + "/", queue: "lab13-unreachable", name: brokertest.Name(t, "conn"), prefetch: 1,
		handle: (&recorder{}).handle, drain: make(chan struct{}), lost: make(chan *amqp.Error, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := c.run(ctx)
	if errors.Is(err, labkit.ErrTODO) {
		t.Fatal(err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("run against a broker that is down returned %v before its context ended; want the context's error: a reconnect loop keeps trying until it is drained or ctx ends", err)
	}
	switch n := dials.Load(); {
	case n > 5:
		t.Errorf("run dialed %d times in 2 s against a broker that is down; want 3 to 5: wait between sessions (bo.wait, then sleep), and let the wait double (only a session that consumed starts the waits over)", n)
	case n < 3:
		t.Errorf("run dialed %d times in 2 s against a broker that is down; want 3 to 5: start with the shortest wait, %v, and double it", n, backoffFirst)
	}
}

// refusingBroker listens on a port of its own and closes every connection
// as it arrives, as a broker that is going down does; it returns the
// address and the count of connections it closed.
func refusingBroker(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening for the refusing broker: %v", err)
	}
	var dials atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return // closed by the cleanup
			}
			dials.Add(1)
			_ = conn.Close()
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return ln.Addr().String(), &dials
}

// recorder is a handler that records the message IDs it was given.
type recorder struct {
	mu   sync.Mutex
	seen []string
}

func (r *recorder) handle(_ context.Context, d amqp.Delivery) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, d.MessageId)
	return nil
}

func (r *recorder) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

// ranOut returns run's result if it has returned, else nil.
func ranOut(stopped <-chan error) error {
	select {
	case err := <-stopped:
		if err == nil {
			return errors.New("run returned nil")
		}
		return err
	default:
		return nil
	}
}

// testQueue declares a durable topic exchange and a classic queue bound to
// it for event.booked, both of this test's own, deleted at the end.
func testQueue(t *testing.T, amqpURL string) (exchange, queue string) {
	t.Helper()
	exchange, queue = brokertest.Name(t, "events"), brokertest.Name(t, "lab13")
	deleteAfter(t, amqpURL, exchange, queue)
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatalf("dialing %s: %v", brokertest.Redact(amqpURL), err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		t.Fatalf("declaring exchange %s: %v", exchange, err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeClassic}); err != nil {
		t.Fatalf("declaring queue %s: %v", queue, err)
	}
	if err := ch.QueueBind(queue, "event.booked", exchange, false, nil); err != nil {
		t.Fatalf("binding queue %s: %v", queue, err)
	}
	return exchange, queue
}

// publishIDs publishes a booking per ID with publishBooking and waits for
// every confirm.
func publishIDs(t *testing.T, amqpURL, exchange string, ids ...string) {
	t.Helper()
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatalf("dialing %s: %v", brokertest.Redact(amqpURL), err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, id := range ids {
		dc, err := publishBooking(ctx, ch, exchange, id)
		if err != nil {
			t.Fatalf("publishing %s: %v", id, err)
		}
		if acked, err := dc.WaitContext(ctx); err != nil || !acked {
			t.Fatalf("the broker did not confirm %s: %v", id, err)
		}
	}
}

// testConsumer opens a connection and a channel of the test's own and
// consumes the queue with manual acks and the given prefetch.
func testConsumer(t *testing.T, amqpURL, queue string, prefetch int) (*amqp.Channel, <-chan amqp.Delivery) {
	t.Helper()
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatalf("dialing %s: %v", brokertest.Redact(amqpURL), err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		t.Fatal(err)
	}
	deliveries, err := consume(ch, queue, "")
	if err != nil {
		t.Fatal(err)
	}
	return ch, deliveries
}

// next waits up to 15 s for the next delivery.
func next(t *testing.T, deliveries <-chan amqp.Delivery) amqp.Delivery {
	t.Helper()
	d, err := await(context.Background(), deliveries, "waiting for a delivery")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// getAll takes every ready message off the queue, on a connection of the
// test's own (acked, so they are gone), and returns them.
func getAll(t *testing.T, amqpURL, queue string) []amqp.Delivery {
	t.Helper()
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatalf("dialing %s: %v", brokertest.Redact(amqpURL), err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	var got []amqp.Delivery
	for {
		d, ok, err := ch.Get(queue, true /* auto-ack */)
		if err != nil {
			t.Fatalf("reading queue %s: %v", queue, err)
		}
		if !ok {
			return got
		}
		got = append(got, d)
	}
}

// describe names deliveries, with their redelivered flag.
func describe(ds []amqp.Delivery) string {
	if len(ds) == 0 {
		return "nothing"
	}
	var parts []string
	for _, d := range ds {
		s := d.MessageId
		if d.Redelivered {
			s += " (redelivered)"
		}
		parts = append(parts, s)
	}
	return fmt.Sprint(parts)
}

// idRange returns prefix-01, prefix-02, ... prefix-n.
func idRange(prefix string, n int) []string {
	var ids []string
	for i := range n {
		ids = append(ids, fmt.Sprintf("%s-%02d", prefix, i+1))
	}
	return ids
}
