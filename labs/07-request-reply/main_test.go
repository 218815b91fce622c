package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labtest"
)

func TestMain(m *testing.M) { brokertest.Main(m) }

// testN is the number of calls step 6 times per mode in the tests: enough
// for a median, few enough to stay quick.
const testN = "40"

// TestRequestReply runs the lab and checks, from a connection of the
// test's own at the moments the program reports, what the broker holds:
// the reply queue is exclusive to BookingService's connection and goes
// with it; a direct reply-to name has one consumer while its caller is
// there and is gone after; the expired request left nothing in the
// request queue while an event waited in its subscriber's queue. Then it
// checks that every reply went to its own question, the late and the
// returned replies, the cleanup, and the output against the docs.
func TestRequestReply(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	queue := brokertest.Name(t, "lab07")
	events := brokertest.Name(t, "lab07-events")
	deleteAfter(t, rabbit.URL, queue, events)

	// What the broker said at each step, as seen by the test.
	seen := map[string]string{}
	var directName string
	observe := func(step, name string) {
		ch := testChannel(t, rabbit.URL)
		q, err := ch.QueueDeclarePassive(name, false, false, false, false, nil)
		switch {
		case err != nil:
			seen[step] = brokerSays(err)
		default:
			seen[step] = fmt.Sprintf("%d messages, %d consumers", q.Messages, q.Consumers)
		}
		if step == stepDirectPresent {
			directName = name
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := runProbed(ctx, []string{"-url", rabbit.URL, "-queue", queue, "-events", events, "-n", testN}, &out, observe); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())

	// The broker's side, step by step.
	want := map[string]*regexp.Regexp{
		// Another connection may not even look at an exclusive queue.
		stepReplyQueueUp: regexp.MustCompile(`^405 RESOURCE_LOCKED - cannot obtain exclusive access to locked queue`),
		// The exclusive queue went with its connection.
		stepInstanceGone: regexp.MustCompile(`^404 NOT_FOUND`),
		// A direct reply-to name is a consumer, not a queue: no messages.
		stepDirectPresent: regexp.MustCompile(`^0 messages, 1 consumers$`),
		stepDirectGone:    regexp.MustCompile(`^404 NOT_FOUND`),
		// The request expired: nothing left, and nobody consuming.
		stepServerDown: regexp.MustCompile(`^0 messages, 0 consumers$`),
		// The event waits for its subscriber.
		stepSubscriberDown: regexp.MustCompile(`^1 messages, 0 consumers$`),
	}
	for step, re := range want {
		got, ok := seen[step]
		if !ok {
			t.Errorf("the program never reported the step %q", step)
			continue
		}
		if !re.MatchString(got) {
			t.Errorf("at the step %q the test's passive declare got %q, want %s", step, got, re)
		}
	}
	if !strings.HasPrefix(directName, directReplyTo+".") {
		t.Errorf("EventService saw reply_to %q for the direct reply-to caller, want %s.<token>", directName, directReplyTo)
	}

	// Every reply went to the question with its correlation id: the three
	// questions of step 1 were req-1 (ev-1), req-2 (ev-2), req-3 (ev-3),
	// and their replies came out of order.
	text := out.String()
	replies := regexp.MustCompile(`(?m)^  reply to (req-\d+): (ev-\d+) has (\d+) seats$`).FindAllStringSubmatch(text, -1)
	var got []string
	for _, m := range replies {
		got = append(got, m[1]+" "+m[2]+" "+m[3])
	}
	if strings.Join(got, ", ") != "req-2 ev-2 300, req-3 ev-3 1200, req-1 ev-1 500" {
		t.Errorf("step 1 replies, in the order they arrived: %v; want req-2 ev-2 300, req-3 ev-3 1200, req-1 ev-1 500 (each reply with its own question, the fastest lookup first)", got)
	}
	for _, line := range []string{
		// Step 2: the late reply reached the reply queue and was ignored.
		"  req-5 (ev-2): ev-2 has 300 seats; on the way it ignored the reply to req-4, which nobody waits for",
		// Step 3: the reply to the vanished queue came back.
		"  EventService's reply to req-6, published with mandatory, came back: 312 NO_ROUTE",
		// Step 4: a direct reply-to reply is returned even when delivered
		// (RabbitMQ before 4.2), and the caller that left got nothing.
		"  req-7 (ev-3): ev-3 has 1200 seats",
		"  after its lookup EventService declared the reply_to passively: 404 NOT_FOUND, the caller is gone; it sent no reply",
		// Step 5.
		"  BookingService came back and got it: event.created for ev-5; it books from its own copy (2000 seats), asking nobody",
	} {
		if !strings.Contains(text, line+"\n") {
			t.Errorf("the output lacks the line %q", line)
		}
	}

	// The lab deleted its queues.
	for _, q := range []string{queue, events} {
		if _, err := testChannel(t, rabbit.URL).QueueDeclarePassive(q, false, false, false, false, nil); err == nil {
			t.Errorf("queue %s still exists after the run", q)
		}
	}

	labtest.CheckOutput(t, text, []string{"README.md", "../../docs/07-request-reply.md"},
		brokertest.Redact(rabbit.URL), brokertest.Redact(brokertest.DefaultAMQPURL),
		events, "lab07.bookingservice",
		queue, "lab07.seats")
}

// TestKeepLeavesTheQueues runs the lab with -keep: both queues stay, empty
// (the request expired, the event was consumed), and expire by themselves.
func TestKeepLeavesTheQueues(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	queue := brokertest.Name(t, "lab07")
	events := brokertest.Name(t, "lab07-events")
	deleteAfter(t, rabbit.URL, queue, events)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, []string{"-url", rabbit.URL, "-queue", queue, "-events", events, "-n", "20", "-keep"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "kept queues") {
		t.Errorf("the output does not say what it kept:\n%s", out.String())
	}
	for _, q := range []string{queue, events} {
		got, err := testChannel(t, rabbit.URL).QueueDeclarePassive(q, false, false, false, false, nil)
		if err != nil {
			t.Errorf("queue %s is gone despite -keep: %v", q, err)
			continue
		}
		if got.Messages != 0 || got.Consumers != 0 {
			t.Errorf("kept queue %s holds %d messages and has %d consumers, want 0 and 0", q, got.Messages, got.Consumers)
		}
	}
	// A second run starts from the kept queues without complaint.
	out.Reset()
	if err := run(ctx, []string{"-url", rabbit.URL, "-queue", queue, "-events", events, "-n", "20"}, &out); err != nil {
		t.Fatalf("second run on the kept queues: %v\n%s", err, out.String())
	}
}

// TestInterruptStopsCleanly cancels the context as Ctrl-C does, as the
// direct reply-to step starts: run returns the cancellation (main then
// exits 130) promptly, and has deleted its queues.
func TestInterruptStopsCleanly(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	queue := brokertest.Name(t, "lab07")
	events := brokertest.Name(t, "lab07-events")
	deleteAfter(t, rabbit.URL, queue, events)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := &labtest.CancelOn{Marker: "4. direct reply-to", Cancel: cancel}
	start := time.Now()
	err := run(ctx, []string{"-url", rabbit.URL, "-queue", queue, "-events", events}, out)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run = %v, want the cancellation\noutput:\n%s", err, out.String())
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("run took %v to stop", took)
	}
	if strings.Contains(out.String(), "deleted queues") {
		t.Errorf("the interrupted run printed the end of a complete run:\n%s", out.String())
	}
	for _, q := range []string{queue, events} {
		_, err := testChannel(t, rabbit.URL).QueueDeclarePassive(q, false, false, false, false, nil)
		var amqpErr *amqp.Error
		if !errors.As(err, &amqpErr) || amqpErr.Code != amqp.NotFound {
			t.Errorf("queue %s after the interrupted run: %v; want 404, the queue deleted", q, err)
		}
	}
}

// TestDialErrors checks that the usual connection mistakes, the absent
// broker among them, give one clear sentence and print nothing else.
func TestDialErrors(t *testing.T) {
	t.Parallel()
	brokertest.CheckDialErrors(t, func(ctx context.Context, t *testing.T, amqpURL string, out io.Writer) error {
		return run(ctx, []string{"-url", amqpURL, "-queue", brokertest.Name(t, "never")}, out)
	})
}

// BenchmarkCall measures one question through the broker, three ways, on
// the same broker in the same run, against the lookup event collaboration
// does instead: a reply queue, one question per call; direct reply-to,
// one question per call; a reply queue, twenty questions per call (ns/op
// is per question in every case).
//
//	go test -run '^$' -bench Call -benchtime 2000x ./labs/07-request-reply
func BenchmarkCall(b *testing.B) {
	rabbit := brokertest.AMQP(b)
	queue := brokertest.Name(b, "bench")
	deleteAfter(b, rabbit.URL, queue)
	conn := dial(b, rabbit.URL)
	ch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, false, false, false, false, amqp.Table{"x-expires": queueTTL.Milliseconds()}); err != nil {
		b.Fatal(err)
	}
	srv := newServer(conn, queue)
	if err := srv.start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.stop)
	bconn := dial(b, rabbit.URL)
	ids := sequence("bench")
	replyQueue, err := newClient(bconn, queue, ids)
	if err != nil {
		b.Fatal(err)
	}
	direct, err := newDirectClient(bconn, queue, ids)
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range []struct {
		name     string
		c        *client
		inFlight int
	}{
		{"reply-queue", replyQueue, 1},
		{"direct-reply-to", direct, 1},
		{"reply-queue-20-in-flight", replyQueue, 20},
	} {
		b.Run(m.name, func(b *testing.B) {
			eventIDs := slices.Repeat([]string{"ev-2"}, m.inFlight)
			asked := 0
			for asked < b.N {
				ctx, cancel := context.WithTimeout(context.Background(), patience)
				_, err := m.c.call(ctx, eventIDs...)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				asked += m.inFlight
			}
			b.ReportMetric(float64(asked)/b.Elapsed().Seconds(), "questions/s")
		})
	}
	b.Run("own-copy", func(b *testing.B) {
		copyOf := map[string]int{"ev-5": 2000}
		sum := 0
		for b.Loop() {
			sum += copyOf["ev-5"]
		}
		if sum == 0 {
			b.Fatal("the copy does not hold ev-5")
		}
	})
}

// deleteAfter deletes, when the test ends, the queues a run with these
// names may have left.
func deleteAfter(t testing.TB, amqpURL string, queues ...string) {
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
		for _, q := range queues {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
	})
}

// testChannel opens a connection and channel of the test's own, closed
// when the test ends. A failed declare closes the channel, so take a new
// one for each look.
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
