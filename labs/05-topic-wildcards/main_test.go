package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labtest"
)

func TestMain(m *testing.M) { brokertest.Main(m) }

// wantMatrix is the routing table RabbitMQ's topic exchange must produce,
// written out by hand: binding pattern -> the routing keys its queue gets.
var wantMatrix = map[string][]string{
	"event.created.europe": {"event.created.europe"},
	"event.created.*":      {"event.created.europe", "event.created.asia"},
	"event.*.europe":       {"event.created.europe", "event.booked.europe"},
	"*.*.europe":           {"event.created.europe", "event.booked.europe", "location.created.europe"},
	"event.#": {"event.created.europe", "event.created.asia", "event.booked.europe",
		"event.created", "event.created.europe.berlin", "event"},
	"event.created.#": {"event.created.europe", "event.created.asia", "event.created",
		"event.created.europe.berlin"},
	"#": {"event.created.europe", "event.created.asia", "event.booked.europe",
		"location.created.europe", "event.created", "event.created.europe.berlin", "event"},
}

// TestRoutingMatrix runs the lab with -keep, then reads every queue with
// its own connection and compares what each one actually holds with
// wantMatrix.
func TestRoutingMatrix(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	exchange := brokertest.Name(t, "wildcards")
	prefix := brokertest.Name(t, "wildcards")
	if len(wantMatrix) != len(bindings) {
		t.Fatalf("wantMatrix has %d patterns, the program binds %d", len(wantMatrix), len(bindings))
	}

	ch := openChannel(t, rabbit.URL)
	t.Cleanup(func() {
		for _, b := range bindings {
			if _, err := ch.QueueDelete(prefix+"."+b.pattern, false, false, false); err != nil {
				t.Errorf("deleting queue for %s: %v", b.pattern, err)
			}
		}
		// The auto-delete exchange goes with its last binding; delete it
		// anyway in case a failure left it unbound-but-present.
		_ = ch.ExchangeDelete(exchange, false, false)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, []string{"-url", rabbit.URL, "-exchange", exchange, "-queue", prefix, "-keep"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}

	for _, b := range bindings {
		queue := prefix + "." + b.pattern
		var got []string
		for {
			d, ok, err := ch.Get(queue, true /* auto-ack */)
			if err != nil {
				t.Fatalf("reading queue %s: %v", queue, err)
			}
			if !ok {
				break
			}
			got = append(got, d.RoutingKey)
		}
		missing, extra := brokertest.DiffIDs(wantMatrix[b.pattern], got)
		if len(missing) > 0 || len(extra) > 0 {
			t.Errorf("binding %-20s missing %v, extra %v (got %v)", b.pattern, missing, extra, got)
		}
	}
}

// TestOutputAndCleanRerun runs the default mode twice on the same exchange:
// both runs print what the README and the chapter show, and afterwards
// nothing the program declared is left on the broker.
func TestOutputAndCleanRerun(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	exchange := brokertest.Name(t, "wildcards")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var outputs []string
	for range 2 {
		var out bytes.Buffer
		if err := run(ctx, []string{"-url", rabbit.URL, "-exchange", exchange}, &out); err != nil {
			t.Fatalf("run: %v\n%s", err, out.String())
		}
		outputs = append(outputs, out.String())
	}
	if outputs[0] != outputs[1] {
		t.Errorf("a rerun printed something else:\n--- first ---\n%s--- second ---\n%s", outputs[0], outputs[1])
	}
	labtest.CheckOutput(t, outputs[0], []string{"README.md", "../../docs/05-topic-wildcards.md"},
		exchange, "lab05.wildcards")

	waitExchangeGone(t, rabbit.URL, exchange)
}

// TestKeptQueuesStopTheNextRun: the queues a -keep run leaves stay bound
// to the auto-delete exchange for five minutes. A run without -keep on the
// same exchange used to go ahead: they took copies of its messages, and a
// message none of its own queues wanted went to them instead of coming
// back. Now it refuses, before it declares or prints anything, and says
// why; the kept queues are left alone. An exchange nobody is bound to
// (a run stopped before it bound a queue) does not stop a run.
func TestKeptQueuesStopTheNextRun(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	exchange := brokertest.Name(t, "wildcards")
	prefix := brokertest.Name(t, "wildcards")
	ch := openChannel(t, rabbit.URL)
	t.Cleanup(func() {
		for _, b := range bindings {
			_, _ = ch.QueueDelete(prefix+"."+b.pattern, false, false, false)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, []string{"-url", rabbit.URL, "-exchange", exchange, "-queue", prefix, "-keep"}, &out); err != nil {
		t.Fatalf("run -keep: %v\n%s", err, out.String())
	}

	out.Reset()
	err := run(ctx, []string{"-url", rabbit.URL, "-exchange", exchange}, &out)
	if err == nil || !strings.Contains(err.Error(), "is in use") || !strings.Contains(err.Error(), "-keep") {
		t.Errorf("a run without -keep after a -keep run on exchange %s returned %v; want an error that says the exchange is in use, by the queues of the -keep run\noutput:\n%s", exchange, err, out.String())
	}
	if out.Len() != 0 {
		t.Errorf("the refused run printed %q; want nothing", out.String())
	}
	if _, err := ch.QueueDeclarePassive(prefix+".#", false, false, false, false, nil); err != nil {
		t.Errorf("the kept queue %s.# is gone after the refused run: %v", prefix, err)
	}

	// An exchange with nothing bound is no obstacle.
	orphan := brokertest.Name(t, "orphan")
	if err := ch.ExchangeDeclare(orphan, amqp.ExchangeTopic, false, true, false, false, nil); err != nil {
		t.Fatalf("declaring exchange %s: %v", orphan, err)
	}
	out.Reset()
	if err := run(ctx, []string{"-url", rabbit.URL, "-exchange", orphan}, &out); err != nil {
		t.Errorf("a run on exchange %s, which exists with nothing bound to it, returned %v; want it to go ahead\noutput:\n%s", orphan, err, out.String())
	}
	waitExchangeGone(t, rabbit.URL, orphan)
}

// TestSomeoneElsesExchangeIsLeftAlone: an exchange of the same name that
// the lab did not declare (another type, or durable) belongs to someone
// else. The check for kept queues deleted it if nothing was bound to it,
// then the run declared its own auto-delete topic exchange in its place
// and that went at the end: the other exchange was gone. Now the run's
// declaration comes first, the broker refuses it (406), and the run stops
// with that, before it prints or deletes anything.
func TestSomeoneElsesExchangeIsLeftAlone(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, victim := range []struct {
		kind    string
		durable bool
	}{
		{amqp.ExchangeFanout, true}, // as lab 02 keeps lab02.events
		{amqp.ExchangeTopic, true},  // the lab's type, but durable
	} {
		name := brokertest.Name(t, "victim")
		ch := openChannel(t, rabbit.URL)
		if err := ch.ExchangeDeclare(name, victim.kind, victim.durable, false, false, false, nil); err != nil {
			t.Fatalf("declaring %s (%s): %v", name, victim.kind, err)
		}
		t.Cleanup(func() { _ = ch.ExchangeDelete(name, false, false) })

		var out bytes.Buffer
		err := run(ctx, []string{"-url", rabbit.URL, "-exchange", name}, &out)
		if err == nil || !strings.Contains(err.Error(), "already exists with other arguments") {
			t.Errorf("a run on the existing durable %s exchange %s returned %v; want an error saying it exists with other arguments (the broker refused the declaration: 406 PRECONDITION_FAILED)", victim.kind, name, err)
		}
		if out.Len() != 0 {
			t.Errorf("the refused run printed %q; want nothing", out.String())
		}
		if err := ch.ExchangeDeclarePassive(name, victim.kind, victim.durable, false, false, false, nil); err != nil {
			t.Errorf("the durable %s exchange %s is gone after the run: %v", victim.kind, name, err)
		}
	}
}

// waitExchangeGone waits until the exchange no longer exists. The exclusive
// queues go with the program's connection, and the auto-delete exchange
// with its last binding; both happen as the broker tears the connection
// down, so poll.
func waitExchangeGone(t *testing.T, rawURL, exchange string) {
	t.Helper()
	conn, err := amqp.Dial(rawURL)
	if err != nil {
		t.Fatalf("dialing: %v", err)
	}
	defer conn.Close()
	brokertest.Eventually(t, 10*time.Second, func() error {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		err = ch.ExchangeDeclarePassive(exchange, amqp.ExchangeTopic, false, true, false, false, nil)
		if err == nil {
			ch.Close()
			return fmt.Errorf("exchange %s still exists after the program exited", exchange)
		}
		var amqpErr *amqp.Error
		if errors.As(err, &amqpErr) && amqpErr.Code == amqp.NotFound {
			return nil // the passive declare closed the channel
		}
		return err
	})
}

// TestInterruptLeavesNothing cancels the context as Ctrl-C does, once the
// queues are bound: run returns the cancellation (main then exits 130), and
// the exclusive queues and the auto-delete exchange go with its connection.
func TestInterruptLeavesNothing(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	exchange := brokertest.Name(t, "wildcards")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := &labtest.CancelOn{Marker: "queues server-named and exclusive", Cancel: cancel}
	err := run(ctx, []string{"-url", rabbit.URL, "-exchange", exchange}, out)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run = %v, want the cancellation\noutput:\n%s", err, out.String())
	}
	waitExchangeGone(t, rabbit.URL, exchange)
}

// TestConnectionErrors checks that the usual mistakes give one clear
// sentence that says what to do, without the password.
func TestConnectionErrors(t *testing.T) {
	t.Parallel()
	brokertest.CheckDialErrors(t, func(ctx context.Context, t *testing.T, amqpURL string, out io.Writer) error {
		return run(ctx, []string{"-url", amqpURL, "-exchange", brokertest.Name(t, "wildcards")}, out)
	})
}

// openChannel opens a connection and channel of the test's own.
func openChannel(t *testing.T, rawURL string) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(rawURL)
	if err != nil {
		t.Fatalf("dialing: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("opening a channel: %v", err)
	}
	return ch
}

// The program's rows and columns must be the ones the expected table covers.
func TestTableCoversTheProgram(t *testing.T) {
	for _, b := range bindings {
		if _, ok := wantMatrix[b.pattern]; !ok {
			t.Errorf("pattern %s is bound by the program but missing from wantMatrix", b.pattern)
		}
		for _, k := range wantMatrix[b.pattern] {
			if !slices.Contains(routingKeys, k) {
				t.Errorf("wantMatrix[%s] lists %s, which the program never publishes", b.pattern, k)
			}
		}
	}
}
