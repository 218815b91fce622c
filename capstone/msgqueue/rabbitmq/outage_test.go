package rabbitmq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/rabbitmq"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// TestBrokerUnreachableForAWhile: while the broker cannot be reached, Emit
// waits (it neither fails nor reports a success), the emitter and listener
// keep retrying with backoff, and once it is back the event is confirmed
// and consumed without anyone restarting anything. Close then ends an Emit
// that is still waiting for a connection.
func TestBrokerUnreachableForAWhile(t *testing.T) {
	t.Parallel()
	e := newEnv(t, rabbitmq.WithReconnectBackoff(20*time.Millisecond, 200*time.Millisecond))
	p, viaProxy := newProxy(t, e.rabbit.URL)
	e.rabbit = &brokertest.RabbitMQ{URL: viaProxy}
	l := e.mustListener(t, []string{contracts.EventBookedName})
	em := e.mustEmitter(t)

	got := make(chan string, 10)
	listenInBackground(t, l, func(_ context.Context, ev contracts.Event) error {
		got <- ev.(*contracts.EventBooked).ID
		return nil
	})
	// waitFor waits for id; an earlier event may come again first (its ack
	// may have been lost in the cut: at-least-once).
	seen := map[string]bool{}
	waitFor := func(id string) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case g := <-got:
				if g == id {
					seen[g] = true
					return
				}
				if !seen[g] {
					t.Fatalf("received %s, want %s", g, id)
				}
				t.Logf("%s delivered again", g)
			case <-timeout:
				t.Fatalf("%s was not received", id)
			}
		}
	}
	if err := em.Emit(t.Context(), booking("before")); err != nil {
		t.Fatal(err)
	}
	waitFor("before")

	// Take the broker away and emit: Emit must wait, not fail.
	p.cut()
	emitted := make(chan error, 1)
	go func() { emitted <- em.Emit(t.Context(), booking("during")) }()
	brokertest.Eventually(t, 30*time.Second, func() error {
		if n := p.refused.Load(); n < 4 {
			return fmt.Errorf("%d reconnection attempts refused so far", n)
		}
		if em.Connected() || l.Connected() {
			return errors.New("the clients still report a connection")
		}
		return nil
	})
	stillWaiting(t, emitted, "while the broker was unreachable")

	// Bring it back: the emit completes and the listener resumes.
	p.restore()
	if err := brokertest.Receive(t, emitted, 30*time.Second, "Emit did not complete after the broker came back"); err != nil {
		t.Fatalf("Emit after the outage: %v", err)
	}
	waitFor("during")
	t.Logf("outage: %d connection attempts refused; emitter %+v; listener %+v", p.refused.Load(), em.Stats(), l.Stats())

	// An Emit waiting for a connection ends with ErrClosed when the emitter
	// is closed, and one whose context ends returns the context's error.
	p.cut()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := em.Emit(ctx, booking("timeout")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Emit with an expiring context during the outage returned %v", err)
	}
	// Count from here: the first outage and the expiring Emit above have
	// been refused already, and Close must come while this Emit waits.
	refusedBefore := p.refused.Load()
	go func() { emitted <- em.Emit(t.Context(), booking("closed")) }()
	brokertest.Eventually(t, 10*time.Second, func() error {
		if n := p.refused.Load() - refusedBefore; n < 4 {
			return fmt.Errorf("%d reconnection attempts refused since the waiting Emit started", n)
		}
		return nil
	})
	stillWaiting(t, emitted, "while the broker was unreachable, before Close")
	if err := em.Close(); err != nil {
		t.Errorf("Close during the outage: %v", err)
	}
	if err := brokertest.Receive(t, emitted, 30*time.Second, "Close did not end the waiting Emit"); !errors.Is(err, msgqueue.ErrClosed) {
		t.Errorf("waiting Emit returned %v after Close, want msgqueue.ErrClosed", err)
	}
}

// TestEmitterResendsAcrossForcedClose cuts the emitter's connection twice
// while eight goroutines keep emitting, each time while the broker holds
// back the confirms, so emits are provably in flight. Every Emit must
// succeed, and the test's own client must find every confirmed event in
// the queue (some twice: a refused publish may still reach the queue).
func TestEmitterResendsAcrossForcedClose(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustListener(t, []string{contracts.EventBookedName}) // declares the queue; nobody consumes
	em := e.mustEmitter(t)

	// Emit from eight goroutines until both closes are done.
	const goroutines = 8
	var (
		confirmed atomic.Int64
		wg        sync.WaitGroup
		mu        sync.Mutex
		ids       = map[string]bool{}
		stop      = make(chan struct{})
	)
	for g := range goroutines {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("resend-%d-%05d", g, i)
				ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
				err := em.Emit(ctx, booking(id))
				cancel()
				if err != nil {
					t.Errorf("Emit: %v", err)
					return
				}
				mu.Lock()
				ids[id] = true
				mu.Unlock()
				confirmed.Add(1)
			}
		})
	}
	// Each round holds every confirm (a gate queue that refuses every
	// publish makes the broker nack them, so each Emit keeps publishing
	// again), waits until an emit was provably refused (it is now in
	// flight and stays so while the gate is shut), closes the connection
	// under the emits that are waiting, waits for the reconnect and opens
	// the gate: the held emits must be confirmed on the new connection.
	ch := brokertest.AdminChannel(t, e.rabbit.URL)
	gate := e.queue + ".gate"
	closed := 0
	for round := range 2 {
		at := confirmed.Load() + 200
		brokertest.Eventually(t, 30*time.Second, func() error {
			if c := confirmed.Load(); c < at {
				return fmt.Errorf("round %d: %d confirmed, waiting for %d", round+1, c, at)
			}
			return nil
		})
		resent := em.Stats().Resent
		boundedQueue(t, ch, gate, e.exchange, 0) // holds every confirm
		brokertest.Eventually(t, 30*time.Second, func() error {
			if n := em.Stats().Resent; n == resent {
				return fmt.Errorf("round %d: no emit refused yet", round+1)
			}
			return nil
		})
		n, err := closeConnections(t.Context(), e.rabbit, e.connName+"emitter")
		if err != nil {
			close(stop)
			wg.Wait()
			t.Fatal(err)
		}
		closed += n
		brokertest.Eventually(t, 30*time.Second, func() error {
			if st := em.Stats(); st.Reconnects != int64(round+1) {
				return fmt.Errorf("round %d: emitter %+v, waiting for reconnect %d", round+1, st, round+1)
			}
			return nil
		})
		if _, err := ch.QueueDelete(gate, false /* if-unused */, false /* if-empty */, false /* no-wait */); err != nil {
			t.Fatalf("opening the gate: %v", err)
		}
	}
	at := confirmed.Load() + 200
	brokertest.Eventually(t, 30*time.Second, func() error {
		if c := confirmed.Load(); c < at {
			return fmt.Errorf("after the closes: %d confirmed, waiting for %d", c, at)
		}
		return nil
	})
	close(stop)
	wg.Wait()

	// Every confirmed event is in the queue, maybe twice.
	ds, err := drainQueue(t, e.rabbit.URL, e.queue)
	if err != nil {
		t.Fatal(err)
	}
	var queued []string
	inQueue := map[string]bool{}
	for _, d := range ds {
		var b contracts.EventBooked
		if err := json.Unmarshal(d.Body, &b); err != nil {
			t.Fatalf("decoding a queued message: %v", err)
		}
		if !inQueue[b.ID] {
			queued = append(queued, b.ID)
		}
		inQueue[b.ID] = true
	}
	st := em.Stats()
	t.Logf("closed %d connection(s) mid-emit: %d confirmed, %d messages in the queue (%d unique, %d duplicates); emitter %+v",
		closed, len(ids), len(ds), len(queued), len(ds)-len(queued), st)
	brokertest.CheckIDs(t, "the queue against the confirmed events", queued, slices.Collect(maps.Keys(ids)))
	if st.Reconnects != 2 {
		t.Errorf("emitter reconnected %d times, want 2", st.Reconnects)
	}
}

// TestNackedEmitIsResent makes the broker nack: a queue of the test's own,
// bound for event.booked, holds at most three messages and rejects further
// publishes. An Emit into the full queue keeps publishing (it neither fails
// nor reports success) until the test makes room, and an Emit whose context
// ends first returns the context's error.
func TestNackedEmitIsResent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	em := e.mustEmitter(t) // declares the exchange
	ch := brokertest.AdminChannel(t, e.rabbit.URL)
	limited := e.queue + ".limited"
	boundedQueue(t, ch, limited, e.exchange, 3)
	for i := range 3 {
		if err := em.Emit(t.Context(), booking(fmt.Sprintf("fits-%d", i))); err != nil {
			t.Fatal(err)
		}
	}

	// The queue is full: this Emit is nacked, again and again.
	result := make(chan error, 1)
	go func() { result <- em.Emit(t.Context(), booking("waits")) }()
	brokertest.Eventually(t, 30*time.Second, func() error {
		stillWaiting(t, result, "into a full queue before there was room")
		if n := em.Stats().Resent; n < 3 {
			return fmt.Errorf("%d nacked publishes so far", n)
		}
		return nil
	})

	// Make room: the next attempt is confirmed.
	if _, ok, err := ch.Get(limited, true /* auto-ack */); err != nil || !ok {
		t.Fatalf("taking a message from %s: ok=%v err=%v", limited, ok, err)
	}
	if err := brokertest.Receive(t, result, 30*time.Second, "Emit did not complete once there was room"); err != nil {
		t.Fatalf("Emit after there was room: %v", err)
	}
	t.Logf("emitter after the full queue: %+v", em.Stats())

	// Full again: an Emit whose context ends returns the context's error.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := em.Emit(ctx, booking("gives-up")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Emit into a full queue with an expiring context returned %v", err)
	}
	ds, err := peekQueue(e.rabbit.URL, limited)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range ds {
		var b contracts.EventBooked
		_ = json.Unmarshal(d.Body, &b)
		ids = append(ids, b.ID)
	}
	if strings.Join(ids, " ") != "fits-1 fits-2 waits" {
		t.Errorf("queue holds %v, want [fits-1 fits-2 waits]", ids)
	}
}

// stillWaiting fails the test if an Emit running in the background has
// returned its result already; when says when it must not have.
func stillWaiting(t *testing.T, result <-chan error, when string) {
	t.Helper()
	select {
	case err := <-result:
		t.Fatalf("Emit returned %v %s", err, when)
	default:
	}
}

// boundedQueue binds a queue for event.booked that holds at most limit
// messages and refuses more (reject-publish): the broker nacks every
// publish it cannot take, so with limit 0 it holds every confirm until the
// queue is deleted. The queue is deleted when the test ends.
func boundedQueue(t *testing.T, ch *amqp.Channel, queue, exchange string, limit int) {
	t.Helper()
	_, err := ch.QueueDeclare(queue,
		false, // durable
		false, // auto-delete
		false, // exclusive
		false, // no-wait
		amqp.Table{amqp.QueueMaxLenArg: limit, amqp.QueueOverflowArg: amqp.QueueOverflowRejectPublish})
	if err != nil {
		t.Fatalf("declaring queue %s: %v", queue, err)
	}
	t.Cleanup(func() { _, _ = ch.QueueDelete(queue, false /* if-unused */, false /* if-empty */, false /* no-wait */) })
	if err := ch.QueueBind(queue, contracts.EventBookedName, exchange, false /* no-wait */, nil /* args */); err != nil {
		t.Fatalf("binding queue %s: %v", queue, err)
	}
}

// TestEmitterHealthSaysTheBrokerBlocksIt: a broker under a resource alarm
// (memory here; a full disk the same) blocks the connections that
// publish, and nothing is confirmed until the alarm clears. The emitter's
// Health says so, and clears with it; it said nil all along (a service's
// /healthz stayed 200 through a 20-second disk alarm). The test runs a
// RabbitMQ node of its own, whose alarm it raises.
func TestEmitterHealthSaysTheBrokerBlocksIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.rabbit = brokertest.PrivateAMQP(t)
	em := e.mustEmitter(t)
	ctx := context.Background()
	if err := em.Health(ctx); err != nil {
		t.Fatalf("Health before the alarm: %v", err)
	}
	clearAlarm := raiseMemoryAlarm(t, e.rabbit)
	// The broker blocks a connection when it next publishes: emit, as a
	// service does; the emit waits for a confirm that does not come.
	emitCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	emitted := make(chan error, 1)
	go func() { emitted <- em.Emit(emitCtx, booking("blocked-1")) }()
	brokertest.Eventually(t, 30*time.Second, func() error {
		if err := em.Health(ctx); err == nil || !strings.Contains(err.Error(), "blocks") {
			return fmt.Errorf("health under a memory alarm: %v, want the block", err)
		}
		return nil
	})
	if err := clearAlarm(); err != nil {
		t.Fatal(err)
	}
	brokertest.Eventually(t, 30*time.Second, func() error { return em.Health(ctx) })
	<-emitted // confirmed once unblocked, or given up at its deadline: either is fine here
}

// TestCloseWhileTheHandlerIsDown: a listener holding a delivery whose
// handler cannot apply events (msgqueue.Unavailable) stops at Close, and
// the delivery goes back to the queue. It waited for the outage to end:
// the services listen with a context that is never cancelled, and their
// shutdown hung for as long as the store was down.
func TestCloseWhileTheHandlerIsDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.mustListener(t, []string{contracts.EventBookedName})
	em := e.mustEmitter(t)
	var calls atomic.Int64
	done := make(chan error, 1)
	go func() {
		done <- l.Listen(context.WithoutCancel(t.Context()), func(context.Context, contracts.Event) error {
			calls.Add(1)
			return msgqueue.Unavailable(errors.New("the store is down"))
		})
	}()
	if err := em.Emit(t.Context(), booking("down-1")); err != nil {
		t.Fatal(err)
	}
	brokertest.Eventually(t, 10*time.Second, func() error {
		if calls.Load() < 2 {
			return fmt.Errorf("%d handler calls, want the delivery held", calls.Load())
		}
		return nil
	})
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Close has not returned after 10 s, %d handler calls so far", calls.Load())
	}
	if err := <-done; err != nil {
		t.Errorf("Listen returned %v, want nil", err)
	}
	ch := brokertest.AdminChannel(t, e.rabbit.URL)
	brokertest.Eventually(t, 10*time.Second, func() error {
		q, err := ch.QueueDeclarePassive(e.queue, true, false, false, false, nil)
		if err != nil {
			return err
		}
		if q.Messages != 1 {
			return fmt.Errorf("queue %s holds %d messages, want the held one back", e.queue, q.Messages)
		}
		return nil
	})
}

// TestLateConfirmIsUnconfirmedNotFailed: the broker blocks publishing (a
// memory alarm, on a node of the test's own) after the emit sent its
// event, so the confirm comes after the emit's deadline. The emit must
// say the outcome is not known yet (*msgqueue.UnconfirmedError) rather
// than fail: EventService with the memory store undid an event on that
// failure which the broker then delivered, and BookingService sold seats
// of an event EventService had forgotten. Once the alarm clears, Final
// says the broker stored it, and the queue holds it.
func TestLateConfirmIsUnconfirmedNotFailed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.rabbit = brokertest.PrivateAMQP(t)
	em := e.mustEmitter(t)
	ctx := context.Background()
	ch := brokertest.AdminChannel(t, e.rabbit.URL)
	if _, err := ch.QueueDeclare(e.queue, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(e.queue, contracts.EventBookedName, e.exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	clearAlarm := raiseMemoryAlarm(t, e.rabbit)

	emitCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := em.Emit(emitCtx, booking("late-1"))
	var unconfirmed *msgqueue.UnconfirmedError
	if !errors.As(err, &unconfirmed) {
		t.Fatalf("Emit under a memory alarm = %v, want a *msgqueue.UnconfirmedError (the broker may still store it)", err)
	}
	if err := clearAlarm(); err != nil {
		t.Fatal(err)
	}
	select {
	case final := <-unconfirmed.Final:
		if final != nil {
			t.Fatalf("Final = %v once the alarm cleared, want nil: the broker stored it", final)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no final answer 30 s after the alarm cleared")
	}
	q, err := brokertest.AdminChannel(t, e.rabbit.URL).QueueDeclarePassive(e.queue, false, false, false, false, nil)
	if err != nil || q.Messages != 1 {
		t.Errorf("queue %s holds %d messages (%v), want the late event", e.queue, q.Messages, err)
	}
}

// raiseMemoryAlarm makes node (a node of the test's own)
// block every publishing connection, as a memory alarm does, and returns
// the function that clears it. It is cleared also when the test ends:
// the clean-up publishes nothing, but closing an emitter that waits for
// confirms would wait.
func raiseMemoryAlarm(t *testing.T, node *brokertest.RabbitMQ) (clear func() error) {
	t.Helper()
	ctx := context.Background()
	if out, err := node.Ctl(ctx, "set_vm_memory_high_watermark", "0"); err != nil {
		t.Fatalf("raising a memory alarm: %v %s", err, out)
	}
	// The node raises the alarm at its next memory check: wait for it,
	// or a publish made meanwhile is confirmed as usual.
	brokertest.Eventually(t, 30*time.Second, func() error {
		out, err := node.Ctl(ctx, "eval", "rabbit_alarm:get_alarms().")
		if err != nil || !strings.Contains(out, "memory") {
			return fmt.Errorf("the memory alarm is not raised yet: %v %s", err, out)
		}
		return nil
	})
	clear = func() error {
		if out, err := node.Ctl(ctx, "set_vm_memory_high_watermark", "0.4"); err != nil {
			return fmt.Errorf("clearing the memory alarm: %v %s", err, out)
		}
		return nil
	}
	t.Cleanup(func() { _ = clear() })
	return clear
}

// TestUnknownOutcomeAfterACutIsUnconfirmed: an emit's message is sent
// and waits for its confirm (a memory alarm holds it), then the
// connection is cut: the library settles the confirm as a nack, and the
// emit waits for a connection until its deadline. The message may be in
// the queue, so the emit must say the outcome is unknown
// (*msgqueue.UnconfirmedError, its Final an error that is not
// ErrRefused), not fail: a caller would undo its write for a plain
// error, as EventService with the memory store does.
func TestUnknownOutcomeAfterACutIsUnconfirmed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, rabbitmq.WithReconnectBackoff(20*time.Millisecond, 200*time.Millisecond))
	node := brokertest.PrivateAMQP(t)
	p, viaProxy := newProxy(t, node.URL)
	e.rabbit = &brokertest.RabbitMQ{URL: viaProxy}
	em := e.mustEmitter(t)
	ch := brokertest.AdminChannel(t, node.URL)
	if _, err := ch.QueueDeclare(e.queue, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(e.queue, contracts.EventBookedName, e.exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	raiseMemoryAlarm(t, node)

	// The emit's deadline comes after the cut (a busy machine can take
	// seconds to report the block), and ends its wait for a connection.
	emitCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	emitted := make(chan error, 1)
	go func() { emitted <- em.Emit(emitCtx, booking("cut-1")) }()
	brokertest.Eventually(t, 15*time.Second, func() error {
		if err := em.Health(t.Context()); err == nil || !strings.Contains(err.Error(), "blocks") {
			return fmt.Errorf("health under a memory alarm: %v, want the block (the message sent)", err)
		}
		return nil
	})
	p.cut()
	err := <-emitted
	var unconfirmed *msgqueue.UnconfirmedError
	if !errors.As(err, &unconfirmed) {
		t.Fatalf("Emit whose message was sent before the cut = %v, want a *msgqueue.UnconfirmedError", err)
	}
	select {
	case final := <-unconfirmed.Final:
		if final == nil || errors.Is(final, msgqueue.ErrRefused) {
			t.Errorf("Final = %v, want an error that leaves the outcome unknown", final)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no final answer 10 s after the emit returned")
	}
}
