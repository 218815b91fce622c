package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labtest"
)

func TestMain(m *testing.M) { brokertest.Main(m) }

// every is all five messages.
var every = []string{"m1", "m2", "m3", "m4", "m5"}

// wantQueues is what each queue must hold after a run, written out by
// hand: the queue's name after the prefix -> the IDs of its messages.
var wantQueues = map[string][]string{
	"default.booking": {"m1", "m2", "m5"},
	"default.mailer":  {"m3"},

	"direct.booking":       {"m1", "m2", "m5"},
	"direct.mailer":        {"m3", "m4"},
	"direct.stats":         {"m3", "m4"}, // the same key as mailer: a copy each, not a share
	"direct.wants-booking": {"m1", "m2", "m5"},
	"direct.wants-europe":  nil, // m1 and m2 share a key

	"fanout.audit":         every,
	"fanout.cache":         every, // bound with event.created, which fanout ignores
	"fanout.wants-booking": nil,
	"fanout.wants-europe":  nil,

	"headers.europe-web":    {"m3"},
	"headers.asia-or-box":   {"m2", "m4"},
	"headers.by-name":       every, // x-match all skips x-event-name: nothing left to compare
	"headers.by-name-x":     {"m3", "m4"},
	"headers.wants-booking": {"m1", "m2", "m5"},
	"headers.wants-europe":  {"m1", "m3", "m5"},

	"topic.events":        {"m1", "m2", "m3", "m4"},
	"topic.created":       {"m1", "m2", "m5"},
	"topic.wants-booking": {"m1", "m2", "m5"},
	"topic.wants-europe":  nil,
}

// TestRoutingTable runs the lab with -keep, then reads every queue with a
// connection of its own and compares what each one holds with wantQueues;
// the message sent to a queue that does not exist went nowhere.
func TestRoutingTable(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	prefix := brokertest.Name(t, "lab06")
	exchanges, queues := names(prefix)
	ch := openChannel(t, rabbit.URL)
	cleanUp(t, rabbit.URL, exchanges, queues)
	if len(queues) != len(wantQueues) {
		t.Errorf("the program declares %d queues, wantQueues lists %d", len(queues), len(wantQueues))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, []string{"-url", rabbit.URL, "-prefix", prefix, "-keep"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), fmt.Sprintf("kept 4 exchanges and %d queues", len(wantQueues))) {
		t.Errorf("the output does not say what it kept:\n%s", out.String())
	}

	for _, q := range queues {
		want, ok := wantQueues[strings.TrimPrefix(q, prefix+".")]
		if !ok {
			t.Errorf("queue %s is declared by the program but missing from wantQueues", q)
			continue
		}
		var got []string
		for {
			d, ok, err := ch.Get(q, true /* auto-ack */)
			if err != nil {
				t.Fatalf("reading queue %s: %v", q, err)
			}
			if !ok {
				break
			}
			got = append(got, d.MessageId)
		}
		if missing, extra := brokertest.DiffIDs(want, got); len(missing) > 0 || len(extra) > 0 {
			t.Errorf("queue %s holds %v, want %v: missing %v, extra or repeated %v", q, got, want, missing, extra)
		}
	}

	// m4 went to a queue name nobody declared: the broker created nothing.
	typo := prefix + ".default.mailr"
	if _, err := openChannel(t, rabbit.URL).QueueDeclarePassive(typo, false, false, false, false, nil); !isNotFound(err) {
		t.Errorf("passive declare of %s = %v, want 404 NOT_FOUND", typo, err)
	}
	// The exchanges are still there, bound to the kept queues.
	for _, x := range exchanges {
		kind := strings.TrimPrefix(x, prefix+".")
		if err := openChannel(t, rabbit.URL).ExchangeDeclarePassive(x, kind, false, true, false, false, nil); err != nil {
			t.Errorf("exchange %s is gone despite -keep: %v", x, err)
		}
	}
}

// TestOutputAndCleanRerun runs the default mode twice with the same names:
// both runs print what the README and the chapter show, and afterwards
// nothing the program declared is left on the broker.
func TestOutputAndCleanRerun(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	prefix := brokertest.Name(t, "lab06")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var outputs []string
	for range 2 {
		var out bytes.Buffer
		if err := run(ctx, []string{"-url", rabbit.URL, "-prefix", prefix}, &out); err != nil {
			t.Fatalf("run: %v\n%s", err, out.String())
		}
		outputs = append(outputs, out.String())
	}
	if outputs[0] != outputs[1] {
		t.Errorf("a rerun printed something else:\n--- first ---\n%s--- second ---\n%s", outputs[0], outputs[1])
	}
	labtest.CheckOutput(t, outputs[0], []string{"README.md", "../../docs/06-exchange-types.md"}, prefix, "lab06")
	checkNothingLeft(t, rabbit.URL, prefix)
}

// TestKeepThenRerunStartsClean runs with -keep and then without: the
// second run starts from empty queues, so it prints the same table, and
// it deletes what the first one kept.
func TestKeepThenRerunStartsClean(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	prefix := brokertest.Name(t, "lab06")
	exchanges, queues := names(prefix)
	cleanUp(t, rabbit.URL, exchanges, queues) // a failed run must not leave them behind
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, []string{"-url", rabbit.URL, "-prefix", prefix, "-keep"}, &out); err != nil {
		t.Fatalf("run -keep: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"-url", rabbit.URL, "-prefix", prefix}, &out); err != nil {
		t.Fatalf("run after -keep: %v\n%s", err, out.String())
	}
	labtest.CheckOutput(t, out.String(), []string{"README.md"}, prefix, "lab06")
	checkNothingLeft(t, rabbit.URL, prefix)
}

// cleanUp deletes the exchanges and queues when the test ends, whatever
// the run left, over a connection of its own (a failed check may have
// closed the test's).
func cleanUp(t *testing.T, url string, exchanges, queues []string) {
	t.Helper()
	t.Cleanup(func() {
		conn, err := amqp.Dial(url)
		if err != nil {
			t.Errorf("cleaning up: %v", err)
			return
		}
		defer conn.Close()
		if err := deleteAll(conn, exchanges, queues); err != nil {
			t.Errorf("cleaning up: %v", err)
		}
	})
}

// TestInterruptLeavesNothing cancels the context as Ctrl-C does, in the
// middle of the run: run returns the cancellation (main then exits 130),
// and what it declared is gone.
func TestInterruptLeavesNothing(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	prefix := brokertest.Name(t, "lab06")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := &labtest.CancelOn{Marker: "fanout exchange", Cancel: cancel}
	err := run(ctx, []string{"-url", rabbit.URL, "-prefix", prefix}, out)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run = %v, want the cancellation\noutput:\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "headers exchange") {
		t.Errorf("run went on after the cancellation:\n%s", out.String())
	}
	checkNothingLeft(t, rabbit.URL, prefix)
}

// TestConnectionErrors checks that the usual mistakes, a broker that is not
// there among them, give one clear sentence that says what to do, without
// the password, and print nothing before it.
func TestConnectionErrors(t *testing.T) {
	t.Parallel()
	brokertest.CheckDialErrors(t, func(ctx context.Context, t *testing.T, amqpURL string, out io.Writer) error {
		return run(ctx, []string{"-url", amqpURL, "-prefix", brokertest.Name(t, "lab06")}, out)
	})
}

// TestBadArguments checks the mistakes made on the command line.
func TestBadArguments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-prefix", ""}, "-prefix must not be empty"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"-nosuchflag"}, "flag provided but not defined"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), tc.args, &out)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

// TestFlagsWriteOnlyToOut: unless told otherwise, the flag package writes
// its complaint about a bad flag, and the usage, to os.Stderr; so
// TestBadArguments spilled them into the test's output. Now a bad flag is
// run's error alone (main prints it once), and -h writes the usage to out.
// Not parallel: it swaps os.Stderr.
func TestFlagsWriteOnlyToOut(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatalf("making a pipe: %v", err)
	}
	stderr := os.Stderr
	os.Stderr = w
	var bad, help bytes.Buffer
	badErr := run(context.Background(), []string{"-nosuchflag"}, &bad)
	helpErr := run(context.Background(), []string{"-h"}, &help)
	os.Stderr = stderr
	_ = w.Close()
	spilled, _ := io.ReadAll(r)
	_ = r.Close()

	if len(spilled) > 0 {
		t.Errorf("run wrote to os.Stderr:\n%s", spilled)
	}
	if badErr == nil || !strings.Contains(badErr.Error(), "flag provided but not defined: -nosuchflag") {
		t.Errorf("run(-nosuchflag) = %v; want the flag package's complaint as its error", badErr)
	}
	if bad.Len() > 0 {
		t.Errorf("run(-nosuchflag) printed %q; want nothing: main prints the error", bad.String())
	}
	if helpErr != nil || !strings.Contains(help.String(), "-prefix") {
		t.Errorf("run(-h) = %v and printed %q; want no error and the usage, with -prefix", helpErr, help.String())
	}
}

// checkNothingLeft fails the test if any exchange or queue the program
// declares under prefix still exists. run deletes them before it returns,
// so there is nothing to wait for.
func checkNothingLeft(t *testing.T, rawURL, prefix string) {
	t.Helper()
	exchanges, queues := names(prefix)
	conn := dial(t, rawURL)
	for _, x := range exchanges {
		// A passive declare that fails closes its channel: one each.
		ch, err := conn.Channel()
		if err != nil {
			t.Fatalf("opening a channel: %v", err)
		}
		kind := strings.TrimPrefix(x, prefix+".")
		if err := ch.ExchangeDeclarePassive(x, kind, false, true, false, false, nil); !isNotFound(err) {
			t.Errorf("exchange %s: passive declare = %v, want 404 NOT_FOUND: it is still there", x, err)
		}
		_ = ch.Close()
	}
	for _, q := range append(queues, prefix+".default.mailr") {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatalf("opening a channel: %v", err)
		}
		if _, err := ch.QueueDeclarePassive(q, false, false, false, false, nil); !isNotFound(err) {
			t.Errorf("queue %s: passive declare = %v, want 404 NOT_FOUND: it is still there", q, err)
		}
		_ = ch.Close()
	}
}

// isNotFound reports whether err is the broker's 404 NOT_FOUND.
func isNotFound(err error) bool {
	var amqpErr *amqp.Error
	return errors.As(err, &amqpErr) && amqpErr.Code == amqp.NotFound
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

// openChannel opens a connection and a channel of the test's own.
func openChannel(t *testing.T, rawURL string) *amqp.Channel {
	t.Helper()
	ch, err := dial(t, rawURL).Channel()
	if err != nil {
		t.Fatalf("opening a channel: %v", err)
	}
	return ch
}
