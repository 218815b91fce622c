package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labtest"
)

func TestMain(m *testing.M) { brokertest.Main(m) }

// seen is one delivery the program reported to its probe.
type seen struct {
	step        string
	id          string
	redelivered bool
}

// counts is what the broker said about a queue at one moment.
type counts struct{ ready, unacked int }

// TestConsumeAck runs the lab and checks, with the broker's own numbers and
// a channel of its own, what each step claims: redelivery after a crash,
// no ack before processing, the prefetch limit, poison messages in the
// dead-letter queue, and the round-robin split.
func TestConsumeAck(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	exchange := brokertest.Name(t, "events")
	queue := brokertest.Name(t, "lab04")
	deleteAfter(t, rabbit.URL, exchange, queue)

	var (
		log      []seen
		brokerAt = map[string]counts{} // what rabbitmqctl said at a step
		noCtl    error                 // why rabbitmqctl could not be asked
		dead     []amqp.Delivery       // the dead-letter queue, read by the test
	)
	observe := func(step string, d amqp.Delivery) {
		log = append(log, seen{step, d.MessageId, d.Redelivered})
		switch step {
		case stepCrashHeld, stepRedelivered, stepPrefetchFull:
			if _, done := brokerAt[step]; done || noCtl != nil {
				return
			}
			c, err := queueCounts(rabbit, queue)
			if err != nil {
				noCtl = err
				return
			}
			brokerAt[step] = c
		case stepDeadLetters:
			// Read the dead-letter queue with our own channel, then hand
			// the messages back by closing it.
			dch := testChannel(t, rabbit.URL)
			for {
				m, ok, err := dch.Get(queue+".dlq", false /* auto-ack */)
				if err != nil {
					t.Fatalf("reading the dead-letter queue: %v", err)
				}
				if !ok {
					break
				}
				dead = append(dead, m)
			}
			_ = dch.Close()
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := runProbed(ctx, []string{"-url", rabbit.URL, "-exchange", exchange, "-queue", queue}, &out, observe); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())

	// Step 1: the same message came back, flagged, after the crash; and
	// it was not acked while being processed, by A or by B.
	held, again := only(t, log, stepCrashHeld), only(t, log, stepRedelivered)
	if held.id != "crash-1" || held.redelivered {
		t.Errorf("consumer A got %s redelivered=%t, want crash-1 redelivered=false", held.id, held.redelivered)
	}
	if again.id != held.id || !again.redelivered {
		t.Errorf("consumer B got %s redelivered=%t, want %s redelivered=true", again.id, again.redelivered, held.id)
	}
	switch {
	case errors.Is(noCtl, brokertest.ErrNoCtl):
		// A broker without rabbitmqctl (AMQP_URL on another machine).
		t.Logf("rabbitmqctl is not available, so the unacked counts are not checked: %v", noCtl)
	case noCtl != nil:
		t.Errorf("asking rabbitmqctl for the unacked counts: %v", noCtl)
	default:
		for _, step := range []string{stepCrashHeld, stepRedelivered} {
			if got, want := brokerAt[step], (counts{ready: 0, unacked: 1}); got != want {
				t.Errorf("while %q: the broker counted %+v, want %+v: the message must stay unacked until processed", step, got, want)
			}
		}
		// Step 2: a full prefetch window of 3 out of 10.
		if got, want := brokerAt[stepPrefetchFull], (counts{ready: 7, unacked: 3}); got != want {
			t.Errorf("with the prefetch window full the broker counted %+v, want %+v", got, want)
		}
	}
	checkIDs(t, "prefetch", ids(log, stepPrefetchDone), "prefetch-%02d", 10)

	// Step 3: the requeue loop delivered each poison message again and
	// again; the fix rejected each once; both are dead letters now.
	loops := map[string]int{}
	firsts := map[string]int{}
	for _, s := range log {
		if s.step == stepRequeued {
			loops[s.id]++
			if !s.redelivered {
				firsts[s.id]++
			}
		}
	}
	for _, id := range []string{"poison-1", "poison-2"} {
		if loops[id] < 2 || firsts[id] != 1 {
			t.Errorf("%s: %d deliveries in the requeue loop, %d not flagged redelivered; want at least 2 and exactly 1", id, loops[id], firsts[id])
		}
	}
	checkIDs(t, "rejected", ids(log, stepRejected), "poison-%d", 2)
	bodies := map[string][]byte{"poison-1": poisonMalformed, "poison-2": poisonNoHeader}
	var deadIDs []string
	for _, m := range dead {
		deadIDs = append(deadIDs, m.MessageId)
		if !bytes.Equal(m.Body, bodies[m.MessageId]) {
			t.Errorf("dead letter %s has body %q, want %q", m.MessageId, m.Body, bodies[m.MessageId])
		}
		if got := firstDeath(m); got.reason != "rejected" || got.queue != queue || got.count != 1 {
			t.Errorf("dead letter %s has x-death %+v, want reason rejected from queue %s, count 1", m.MessageId, got, queue)
		}
	}
	checkIDs(t, "dead-letter queue", deadIDs, "poison-%d", 2)

	// Step 4: an exact 5/5 split, every message once.
	w1, w2 := ids(log, stepWorker1), ids(log, stepWorker2)
	if len(w1) != 5 || len(w2) != 5 {
		t.Errorf("worker 1 processed %d, worker 2 processed %d, want 5 and 5", len(w1), len(w2))
	}
	checkIDs(t, "round robin", append(w1, w2...), "share-%02d", 10)

	// Nothing is left anywhere, and the lab deleted what it declared.
	for _, q := range []string{queue, queue + ".dlq"} {
		probe := testChannel(t, rabbit.URL)
		if _, err := probe.QueueDeclarePassive(q, true, false, false, false, nil); err == nil {
			t.Errorf("queue %s still exists after the run", q)
		}
	}
	for _, x := range []string{queue + ".dlx", exchange} {
		if err := testChannel(t, rabbit.URL).ExchangeDeclarePassive(x, amqp.ExchangeFanout, true, true, false, false, nil); err == nil {
			t.Errorf("exchange %s still exists after the run", x)
		}
	}

	labtest.CheckOutput(t, out.String(), []string{"README.md", "../../docs/04-consume-ack.md"},
		brokertest.Redact(rabbit.URL), brokertest.Redact(brokertest.DefaultAMQPURL),
		exchange, "lab04.events",
		queue, "lab04.consume")
}

// TestKeepLeavesTheDeadLetters runs the lab with -keep and reads the
// dead-letter queue afterwards: the poison messages are there, and not in
// the main queue.
func TestKeepLeavesTheDeadLetters(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	exchange := brokertest.Name(t, "events")
	queue := brokertest.Name(t, "lab04")
	deleteAfter(t, rabbit.URL, exchange, queue)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, []string{"-url", rabbit.URL, "-exchange", exchange, "-queue", queue, "-keep"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	kept := fmt.Sprintf("kept queue %q, exchange %q and queue %q (they expire after 5m0s unused), and exchange %q\n", queue, queue+".dlx", queue+".dlq", exchange)
	if !strings.HasSuffix(out.String(), kept) {
		t.Errorf("the output does not end with %q:\n%s", kept, out.String())
	}

	ch := testChannel(t, rabbit.URL)
	for _, x := range []struct{ name, kind string }{{exchange, amqp.ExchangeTopic}, {queue + ".dlx", amqp.ExchangeFanout}} {
		if err := testChannel(t, rabbit.URL).ExchangeDeclarePassive(x.name, x.kind, true, false, false, false, nil); err != nil {
			t.Errorf("exchange %s is gone despite -keep: %v", x.name, err)
		}
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("the main queue is gone despite -keep: %v", err)
	}
	if q.Messages != 0 {
		t.Errorf("the main queue holds %d messages, want 0", q.Messages)
	}
	var deadIDs []string
	for {
		m, ok, err := ch.Get(queue+".dlq", true /* auto-ack */)
		if err != nil {
			t.Fatalf("reading the dead-letter queue: %v", err)
		}
		if !ok {
			break
		}
		deadIDs = append(deadIDs, m.MessageId)
		if got := firstDeath(m); got.reason != "rejected" || got.queue != queue {
			t.Errorf("dead letter %s has x-death %+v, want reason rejected from queue %s", m.MessageId, got, queue)
		}
		if m.MessageId == "poison-1" {
			if _, err := contracts.Decode(contracts.EventCreatedName, m.Body); err == nil {
				t.Errorf("poison-1 decodes, but it should be the malformed one: %s", m.Body)
			}
		}
	}
	checkIDs(t, "dead-letter queue", deadIDs, "poison-%d", 2)
}

// TestInterruptStopsCleanly cancels the context in the middle of step 2, as
// Ctrl-C does: run returns promptly with the cancellation and deletes what
// it declared.
func TestInterruptStopsCleanly(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	exchange := brokertest.Name(t, "events")
	queue := brokertest.Name(t, "lab04")
	deleteAfter(t, rabbit.URL, exchange, queue)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	observe := func(step string, _ amqp.Delivery) {
		if step == stepPrefetchFull {
			cancel()
		}
	}
	var out bytes.Buffer
	start := time.Now()
	err := runProbed(ctx, []string{"-url", rabbit.URL, "-exchange", exchange, "-queue", queue}, &out, observe)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run = %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("run took %v to stop", took)
	}
	for _, q := range []string{queue, queue + ".dlq"} {
		probe := testChannel(t, rabbit.URL)
		if _, err := probe.QueueDeclarePassive(q, true, false, false, false, nil); err == nil {
			t.Errorf("queue %s still exists after the interrupted run", q)
		}
	}
	for _, x := range []string{queue + ".dlx", exchange} {
		if err := testChannel(t, rabbit.URL).ExchangeDeclarePassive(x, amqp.ExchangeFanout, true, true, false, false, nil); err == nil {
			t.Errorf("exchange %s still exists after the interrupted run", x)
		}
	}
}

// TestDialErrors checks that the usual connection mistakes give one clear
// sentence.
func TestDialErrors(t *testing.T) {
	t.Parallel()
	brokertest.CheckDialErrors(t, func(ctx context.Context, t *testing.T, amqpURL string, out io.Writer) error {
		return run(ctx, []string{"-url", amqpURL, "-queue", brokertest.Name(t, "never")}, out)
	})
}

// only returns the single delivery the program reported at step.
func only(t *testing.T, log []seen, step string) seen {
	t.Helper()
	var found []seen
	for _, s := range log {
		if s.step == step {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("step %q was reported %d times, want once", step, len(found))
	}
	return found[0]
}

// ids lists the message IDs reported at step.
func ids(log []seen, step string) []string {
	var out []string
	for _, s := range log {
		if s.step == step {
			out = append(out, s.id)
		}
	}
	return out
}

// checkIDs compares the IDs got with format%i for i in 1..n and reports
// the missing and the extra (duplicates count as extra).
func checkIDs(t *testing.T, what string, got []string, format string, n int) {
	t.Helper()
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf(format, i+1)
	}
	brokertest.CheckIDs(t, what, got, want)
}

// queueCounts asks rabbitmqctl for a queue's ready and unacked counts,
// which AMQP alone cannot tell (queue.declare reports only ready ones).
func queueCounts(rabbit *brokertest.RabbitMQ, queue string) (counts, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	text, err := rabbit.Ctl(ctx, "list_queues", "--quiet", "--no-table-headers", "name", "messages_ready", "messages_unacknowledged")
	if err != nil {
		return counts{}, err
	}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != queue {
			continue
		}
		ready, err1 := strconv.Atoi(f[1])
		unacked, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil {
			return counts{}, fmt.Errorf("unexpected rabbitmqctl line %q", line)
		}
		return counts{ready, unacked}, nil
	}
	return counts{}, fmt.Errorf("rabbitmqctl does not list queue %s", queue)
}

// deleteAfter deletes, when the test ends, everything a run with these
// names may have declared.
func deleteAfter(t *testing.T, amqpURL, exchange, queue string) {
	t.Helper()
	t.Cleanup(func() {
		conn, err := amqp.Dial(amqpURL)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		for _, q := range []string{queue, queue + ".dlq"} {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
		for _, x := range []string{queue + ".dlx", exchange} {
			_ = ch.ExchangeDelete(x, false, false)
		}
	})
}

// TestWaitReadyFailsOnAWrongCount: when a queue never reaches the count
// the story expects, waitReady says so. It used to return the count it
// found and no error, and the program went on to print the story with the
// wrong number: after an ack before the crash (a Try-this), "the broker
// put crash-1 back: 0 ready", and then a timeout further on.
func TestWaitReadyFailsOnAWrongCount(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	ch := testChannel(t, rabbit.URL)
	queue := brokertest.Name(t, "lab04-empty")
	if _, err := ch.QueueDeclare(queue,
		false, // durable
		true,  // auto-delete
		true,  // exclusive
		false, // no-wait
		nil,   // args
	); err != nil {
		t.Fatalf("declaring queue %s: %v", queue, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ready, err := waitReady(ctx, ch, queue, 1)
	if want := "holds 0 ready messages"; err == nil || !strings.Contains(err.Error(), want) || ready != 0 {
		t.Errorf("waitReady for 1 ready message in the empty queue %s returned %d, %v; want 0 and an error that says it %s, not 1", queue, ready, err, want)
	}
}

// testChannel opens a connection and channel of the test's own, closed
// when the test ends.
func testChannel(t testing.TB, amqpURL string) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatalf("dialing %s: %v", brokertest.Redact(amqpURL), err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("opening a channel: %v", err)
	}
	return ch
}
