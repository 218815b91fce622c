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

	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labkit"
	"example.com/myevents/labs/labtest"
)

func TestMain(m *testing.M) { brokertest.Main(m) }

// testN is the message count per mode the tests use: enough to have many
// windows in flight, few enough to stay quick.
const testN = 300

// TestPublish runs the lab and checks, with a queue of its own bound to the
// same exchange, that every message of every mode arrived exactly once,
// with the right header, content type, delivery mode and body, and that the
// unroutable message was returned instead.
func TestPublish(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	exchange := brokertest.Name(t, "events")
	queue := brokertest.Name(t, "lab03")
	watch := brokertest.Name(t, "watch")
	ch := testChannel(t, rabbit.URL)

	// Declare the exchange as the lab does and bind our own queue for
	// event.created only, so the lab's typo key reaches no queue at all.
	if err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		t.Fatalf("declaring exchange: %v", err)
	}
	if _, err := ch.QueueDeclare(watch, true, false, false, false, nil); err != nil {
		t.Fatalf("declaring the watch queue: %v", err)
	}
	if err := ch.QueueBind(watch, contracts.EventCreatedName, exchange, false, nil); err != nil {
		t.Fatalf("binding the watch queue: %v", err)
	}
	t.Cleanup(func() {
		conn, err := amqp.Dial(rabbit.URL)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer conn.Close()
		cleanupCh, err := conn.Channel()
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		for _, q := range []string{watch, queue} {
			_, _ = cleanupCh.QueueDelete(q, false, false, false)
		}
		_ = cleanupCh.ExchangeDelete(exchange, false, false)
	})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, []string{"-url", rabbit.URL, "-exchange", exchange, "-queue", queue, "-n", fmt.Sprint(testN)}, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())

	// Every message of the three modes must be in our queue: the confirmed
	// ones already are; the unconfirmed ones may still be on their way.
	brokertest.Eventually(t, 10*time.Second, func() error {
		q, err := ch.QueueDeclarePassive(watch, true, false, false, false, nil)
		if err != nil {
			return err
		}
		if q.Messages < 3*testN {
			return fmt.Errorf("the watch queue holds %d messages, want %d", q.Messages, 3*testN)
		}
		return nil
	})

	// Read the queue empty and check every message.
	var seen []string // message IDs in arrival order
	for {
		d, ok, err := ch.Get(watch, true /* auto-ack */)
		if err != nil {
			t.Fatalf("reading the watch queue: %v", err)
		}
		if !ok {
			break
		}
		seen = append(seen, d.MessageId)
		if name, _ := d.Headers["x-event-name"].(string); name != contracts.EventCreatedName {
			t.Errorf("%s: x-event-name = %q, want %q", d.MessageId, name, contracts.EventCreatedName)
		}
		if d.RoutingKey != contracts.EventCreatedName {
			t.Errorf("%s: routing key = %q, want %q", d.MessageId, d.RoutingKey, contracts.EventCreatedName)
		}
		if d.ContentType != "application/json" {
			t.Errorf("%s: content type = %q, want application/json", d.MessageId, d.ContentType)
		}
		if d.DeliveryMode != amqp.Persistent {
			t.Errorf("%s: delivery mode = %d, want %d (persistent)", d.MessageId, d.DeliveryMode, amqp.Persistent)
		}
		if _, err := contracts.Decode(contracts.EventCreatedName, d.Body); err != nil {
			t.Errorf("%s: body does not decode: %v: %s", d.MessageId, err, d.Body)
		}
	}

	// Compare, per mode, the IDs that arrived with the IDs that were sent.
	for _, mode := range []string{"each", "window", "channel"} {
		var want, got []string
		for i := 1; i <= testN; i++ {
			want = append(want, messageID(mode, i))
		}
		for _, id := range seen {
			if strings.HasPrefix(id, mode+"-") {
				got = append(got, id)
			}
		}
		brokertest.CheckIDs(t, "mode "+mode, got, want)
	}

	// The unroutable message came back to the publisher and reached no queue.
	if id := messageID("unroutable", 1); slices.Contains(seen, id) {
		t.Errorf("the unroutable message %s reached the watch queue", id)
	}
	if !regexp.MustCompile(`(?m)^  sent 1, returned 1 \(312 NO_ROUTE\), confirmed 1, routed to the queue 0$`).MatchString(out.String()) {
		t.Errorf("the output does not report the unroutable message as returned and confirmed")
	}
	// Every mode reports all its messages routed.
	if got := strings.Count(out.String(), fmt.Sprintf("routed to the queue %d\n", testN)); got != 3 {
		t.Errorf("%d modes report %d messages routed, want 3", got, testN)
	}

	// The lab deleted its own queue, but not the exchange: our watch queue
	// is bound to it, so the lab's if-unused delete was refused, and said so.
	probe := testChannel(t, rabbit.URL)
	if _, err := probe.QueueDeclarePassive(queue, true, false, false, false, nil); err == nil {
		t.Errorf("queue %s still exists after the run", queue)
	}
	if err := testChannel(t, rabbit.URL).ExchangeDeclarePassive(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		t.Errorf("exchange %s, which our watch queue is bound to, is gone after the run: %v", exchange, err)
	}
	inUse := fmt.Sprintf("deleted queue %q; kept exchange %q: queues are bound to it, so the if-unused delete was refused\n", queue, exchange)
	if !strings.HasSuffix(out.String(), inUse) {
		t.Errorf("the output does not end with %q", inUse)
	}

	// The docs show a run where nothing else is bound to the exchange
	// (TestCleanup checks that one's last line and the broker).
	labtest.CheckOutput(t, out.String(), []string{"README.md", "../../docs/03-publish.md"},
		inUse, "deleted queue \"lab03.publish\" and exchange \"lab03.events\"\n",
		brokertest.Redact(rabbit.URL), brokertest.Redact(brokertest.DefaultAMQPURL),
		exchange, "lab03.events",
		queue, "lab03.publish")
}

// TestCleanup runs the lab without -keep, where it deletes its queue and
// its exchange, and with -keep, where both stay on the broker.
func TestCleanup(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep=%t", keep), func(t *testing.T) {
			t.Parallel()
			exchange := brokertest.Name(t, "events")
			queue := brokertest.Name(t, "lab03")
			t.Cleanup(func() {
				ch := testChannel(t, rabbit.URL)
				_, _ = ch.QueueDelete(queue, false, false, false)
				_ = ch.ExchangeDelete(exchange, false, false)
			})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			args := []string{"-url", rabbit.URL, "-exchange", exchange, "-queue", queue, "-n", "20"}
			if keep {
				args = append(args, "-keep")
			}
			var out bytes.Buffer
			if err := run(ctx, args, &out); err != nil {
				t.Fatalf("run: %v\n%s", err, out.String())
			}
			want := fmt.Sprintf("\ndeleted queue %q and exchange %q\n", queue, exchange)
			if keep {
				want = fmt.Sprintf("\nkept queue %q and exchange %q (-keep): a run without -keep deletes them\n", queue, exchange)
			}
			if !strings.HasSuffix(out.String(), want) {
				t.Errorf("the output does not end with %q:\n%s", want, out.String())
			}
			if !keep {
				labtest.CheckOutput(t, out.String(), []string{"README.md", "../../docs/03-publish.md"},
					brokertest.Redact(rabbit.URL), brokertest.Redact(brokertest.DefaultAMQPURL),
					exchange, "lab03.events",
					queue, "lab03.publish")
			}

			// Ask the broker: passive declares find both with -keep, and
			// neither without (404, on a fresh channel each).
			errQueue := func() error {
				_, err := testChannel(t, rabbit.URL).QueueDeclarePassive(queue, true, false, false, false, nil)
				return err
			}()
			errExchange := testChannel(t, rabbit.URL).ExchangeDeclarePassive(exchange, amqp.ExchangeTopic, true, false, false, false, nil)
			for what, err := range map[string]error{"queue " + queue: errQueue, "exchange " + exchange: errExchange} {
				var amqpErr *amqp.Error
				switch {
				case keep && err != nil:
					t.Errorf("%s after a run with -keep: %v; want it still there", what, err)
				case !keep && (!errors.As(err, &amqpErr) || amqpErr.Code != amqp.NotFound):
					t.Errorf("%s after a run without -keep: %v; want 404, deleted", what, err)
				}
			}
		})
	}
}

// TestInterruptDeletesTheQueue cancels the context as Ctrl-C does, just as
// the window mode starts: run returns the cancellation (main then exits
// 130) and has deleted its queue and its exchange on the way out.
func TestInterruptDeletesTheQueue(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	exchange := brokertest.Name(t, "events")
	queue := brokertest.Name(t, "lab03")
	t.Cleanup(func() { _ = testChannel(t, rabbit.URL).ExchangeDelete(exchange, false, false) })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := &labtest.CancelOn{Marker: "confirm window:", Cancel: cancel}
	err := run(ctx, []string{"-url", rabbit.URL, "-exchange", exchange, "-queue", queue, "-n", "50"}, out)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run = %v, want the cancellation\noutput:\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "deleted queue") {
		t.Errorf("the interrupted run printed the end of a complete run:\n%s", out.String())
	}
	_, err = testChannel(t, rabbit.URL).QueueDeclarePassive(queue, true, false, false, false, nil)
	var amqpErr *amqp.Error
	if !errors.As(err, &amqpErr) || amqpErr.Code != amqp.NotFound {
		t.Errorf("queue %s after the interrupted run: %v; want 404, the queue deleted", queue, err)
	}
	err = testChannel(t, rabbit.URL).ExchangeDeclarePassive(exchange, amqp.ExchangeTopic, true, false, false, false, nil)
	if !errors.As(err, &amqpErr) || amqpErr.Code != amqp.NotFound {
		t.Errorf("exchange %s after the interrupted run: %v; want 404, the exchange deleted", exchange, err)
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

// BenchmarkPublish compares the three ways of publishing on the same
// broker in the same run. Each sub-benchmark publishes b.N messages and
// reports msgs/s.
//
//	go test -run '^$' -bench Publish -benchtime 3000x ./labs/03-publish
func BenchmarkPublish(b *testing.B) {
	rabbit := brokertest.AMQP(b)
	exchange := brokertest.Name(b, "events")
	queue := brokertest.Name(b, "bench")
	conn, err := labkit.DialAMQP(rabbit.URL, "myevents-03-publish benchmark")
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		b.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		b.Fatal(err)
	}
	if err := ch.QueueBind(queue, contracts.EventCreatedName, exchange, false, nil); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_, _ = ch.QueueDelete(queue, false, false, false)
		_ = ch.ExchangeDelete(exchange, false, false)
	}()
	if err := ch.Confirm(false); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	modes := []struct {
		name    string
		publish func(n int) (tally, error)
	}{
		{"confirm-each", func(n int) (tally, error) { return publishConfirmEach(ctx, ch, exchange, n) }},
		{"window-100", func(n int) (tally, error) { return publishWindow(ctx, ch, exchange, n, 100) }},
		{"window-1000", func(n int) (tally, error) { return publishWindow(ctx, ch, exchange, n, 1000) }},
		{"channel-per-message", func(n int) (tally, error) { return publishChannelPerMessage(ctx, conn, exchange, n) }},
	}
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			b.ResetTimer()
			t, err := m.publish(b.N)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(t.rate(), "msgs/s")
			if _, err := ch.QueuePurge(queue, false); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// testChannel opens a connection and channel of the test's own, closed
// when the test ends.
func testChannel(t testing.TB, url string) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dialing %s: %v", brokertest.Redact(url), err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("opening a channel: %v", err)
	}
	return ch
}
