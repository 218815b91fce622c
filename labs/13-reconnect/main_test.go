package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labtest"
)

func TestMain(m *testing.M) { brokertest.Main(m) }

// docs are the files whose "Expected output" block the program must print.
var docs = []string{"README.md", "../../docs/13-reconnect.md"}

// TestReconnect runs the lab against the broker and checks every part from
// the broker's side, with a connection of the test's own: what part 1 left
// in the queue, what part 2's stale acks removed, and that part 3 processed
// every confirmed message and left nothing behind.
func TestReconnect(t *testing.T) {
	t.Parallel()
	rabbit := needCtl(t)
	exchange := brokertest.Name(t, "events")
	queue := brokertest.Name(t, "lab13")
	connName := brokertest.Name(t, "conn")
	deleteAfter(t, rabbit.URL, exchange, queue)

	reports := map[string]report{}
	var naiveLeft []string // part 1: the IDs the test found in the queue
	observe := func(step string, r report) {
		reports[step] = r
		switch step {
		case stepNaiveDeaf:
			q := passive(t, rabbit.URL, queue)
			if q.Messages != 3 || q.Consumers != 0 {
				t.Errorf("after part 1 the broker counts %d messages and %d consumers in the queue, want 3 and 0", q.Messages, q.Consumers)
			}
			naiveLeft = peekIDs(t, rabbit.URL, queue)
		case stepRecoveryStopped:
			if q := passive(t, rabbit.URL, queue); q.Messages != 0 || q.Consumers != 0 {
				t.Errorf("after part 2 the broker counts %d messages and %d consumers, want 0 and 0", q.Messages, q.Consumers)
			}
			if n := totalMessages(t, rabbit, queue); n != 0 {
				t.Errorf("after part 2 rabbitmqctl counts %d messages (ready and unacked), want 0", n)
			}
		case stepFixHolding:
			if q := passive(t, rabbit.URL, queue); q.Consumers != 1 {
				t.Errorf("while the consumer holds %s the queue has %d consumers, want 1", r.held, q.Consumers)
			}
		case stepFixDone:
			if q := passive(t, rabbit.URL, queue); q.Messages != 0 {
				t.Errorf("after part 3 the broker counts %d ready messages, want 0", q.Messages)
			}
			if n := totalMessages(t, rabbit, queue); n != 0 {
				t.Errorf("after part 3 rabbitmqctl counts %d messages (ready and unacked), want 0", n)
			}
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	start := time.Now()
	err := runProbed(ctx, []string{"-url", rabbit.URL, "-exchange", exchange, "-queue", queue, "-conn-name", connName}, &out, rabbit.Ctl, observe)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Logf("run took %v; output:\n%s", time.Since(start), out.String())

	// Part 1: the messages published after the consumer's connection died
	// are the ones still in the queue.
	brokertest.CheckIDs(t, "part 1, left in the queue", naiveLeft, []string{"naive-4", "naive-5", "naive-6"})

	// Part 2: the tags of the same messages before and after recovery,
	// the refused ack, and rec-5 gone from the broker (the queue was
	// empty above) without a single handler call: acked by a stale tag.
	r2 := mustReport(t, reports, stepRecoveryStopped)
	if got, want := fmt.Sprint(r2.heldTags), "map[rec-2:2 rec-3:3 rec-4:4]"; got != want {
		t.Errorf("part 2: tags held over the outage %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(r2.newTags), "map[rec-2:1 rec-3:2 rec-4:3 rec-5:4]"; got != want {
		t.Errorf("part 2: tags after recovery %s, want %s", got, want)
	}
	if e := r2.channelErr; e == nil || e.Code != amqp.PreconditionFailed || e.Reason != "PRECONDITION_FAILED - unknown delivery tag 2" {
		t.Errorf("part 2: the broker closed the channel with %v, want 406 PRECONDITION_FAILED - unknown delivery tag 2", e)
	}
	if got, want := fmt.Sprint(r2.calls), "map[rec-1:1 rec-2:2 rec-3:2 rec-4:1]"; got != want {
		t.Errorf("part 2: handler calls %s, want %s (and none for rec-5)", got, want)
	}

	// Part 3: every confirmed message processed, none extra; the held one
	// twice; one reconnect each.
	r3 := mustReport(t, reports, stepFixDone)
	var processed []string
	calls := 0
	for id, n := range r3.calls {
		processed = append(processed, id)
		calls += n
	}
	brokertest.CheckIDs(t, "part 3, processed vs published", processed, r3.published)
	dups := calls - len(r3.calls)
	t.Logf("part 3: %d published and confirmed, %d processed in %d handler calls (%d duplicates), %d not confirmed at the outage and sent again, %d acks refused",
		len(r3.published), len(r3.calls), calls, dups, r3.unconfirmed, r3.ackRefused)
	if len(r3.published) < fixHoldAt+fixAfterRecovery {
		t.Errorf("part 3 published %d messages, want at least %d", len(r3.published), fixHoldAt+fixAfterRecovery)
	}
	if r3.calls[r3.held] < 2 || dups < 1 {
		t.Errorf("part 3: the held message %s had %d handler calls and there were %d duplicates; want it processed again after the reconnect", r3.held, r3.calls[r3.held], dups)
	}
	if r3.reconnects != [2]int{1, 1} {
		t.Errorf("part 3 reconnected consumer %d, publisher %d times; want 1 and 1", r3.reconnects[0], r3.reconnects[1])
	}
	if r3.ackRefused != 1 {
		t.Errorf("part 3: %d acks refused, want 1 (the held message's)", r3.ackRefused)
	}
	if r3.unconfirmed < 1 {
		t.Errorf("part 3: the publisher reports %d unconfirmed publishes at the outage; it can only notice an outage through one", r3.unconfirmed)
	}

	// Nothing is left: the queue and the exchange are gone, and so are the
	// lab's connections.
	if err := passiveErr(rabbit.URL, queue); err == nil {
		t.Errorf("queue %s still exists after the run", queue)
	}
	if err := exchangeErr(rabbit.URL, exchange); err == nil {
		t.Errorf("exchange %s still exists after the run", exchange)
	}
	noConnections(t, rabbit, connName)

	labtest.CheckOutput(t, out.String(), docs,
		brokertest.Redact(rabbit.URL), brokertest.Redact(brokertest.DefaultAMQPURL),
		exchange, "lab13.events",
		queue, "lab13.reconnect")
}

// TestTryThisSafeByHand does what "Make part 2 safe by hand" (Try this,
// in the README and the docs chapter) tells a learner to do: in a copy of
// main.go it leaves out the loop that acks the held deliveries and acks
// all four redelivered ones, runs that program with go run -overlay (the
// tree stays as it is), and requires what the step promises: the run ends
// well, every message, rec-5 included, is processed once, and nothing is
// left in the queue.
func TestTryThisSafeByHand(t *testing.T) {
	t.Parallel()
	rabbit := needCtl(t)
	if rabbit.Backend == brokertest.FromContainer {
		t.Skip("the program run by go run reaches rabbitmqctl only on this machine, and this broker runs in a container")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is not on the PATH: %v", err)
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	edited, err := safeByHand(string(src))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	editedPath := filepath.Join(dir, "main.go")
	if err := os.WriteFile(editedPath, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	mainPath, err := filepath.Abs("main.go")
	if err != nil {
		t.Fatal(err)
	}
	overlay, err := json.Marshal(map[string]map[string]string{"Replace": {mainPath: editedPath}})
	if err != nil {
		t.Fatal(err)
	}
	overlayPath := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(overlayPath, overlay, 0o600); err != nil {
		t.Fatal(err)
	}

	exchange := brokertest.Name(t, "events")
	queue := brokertest.Name(t, "lab13")
	connName := brokertest.Name(t, "conn")
	deleteAfter(t, rabbit.URL, exchange, queue)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "run", "-overlay", overlayPath, ".",
		"-url", rabbit.URL, "-exchange", exchange, "-queue", queue, "-conn-name", connName)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("the lab with part 2 made safe by hand: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		"  left in the queue: 0 messages; handler calls: rec-1 1, rec-2 1, rec-3 1, rec-4 1, rec-5 1\n",
		"deleted queue ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the lab with part 2 made safe by hand printed no %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "lost:") {
		t.Errorf("the lab with part 2 made safe by hand lost a message:\n%s", out)
	}
	noConnections(t, rabbit, connName)
}

// safeByHand makes the edit of "Make part 2 safe by hand" to the source
// of main.go: it leaves out the loop that acks the held deliveries, and
// acks all four redelivered ones instead of the first two.
func safeByHand(src string) (string, error) {
	const loop = "\tfor _, d := range held {\n\t\tif err := handle(d); err != nil {\n"
	start := strings.Index(src, loop)
	if start < 0 {
		return "", errors.New("main.go has no loop that acks the held deliveries any more; update this test and the step \"Make part 2 safe by hand\" of the docs")
	}
	end := strings.Index(src[start:], "\n\t}\n")
	src = src[:start] + src[start+end+len("\n\t}\n"):]
	if n := strings.Count(src, "again[:2]"); n != 1 {
		return "", fmt.Errorf("main.go acks the redelivered messages of part 2 in %d places where again[:2] is named, want 1; update this test and the step \"Make part 2 safe by hand\" of the docs", n)
	}
	return strings.Replace(src, "again[:2]", "again", 1), nil
}

// TestInterruptStopsCleanly cancels the context, as Ctrl-C does, in part 1
// and in part 3 (while the consumer holds a message and both loops run):
// run returns promptly with the cancellation, deletes the queue and the
// exchange (or, with -keep, leaves both) and closes every connection it
// opened.
func TestInterruptStopsCleanly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		at   string
		keep bool
	}{{stepNaiveDeaf, false}, {stepFixHolding, false}, {stepNaiveDeaf, true}} {
		at := tc.at
		t.Run(fmt.Sprintf("%s keep=%t", at, tc.keep), func(t *testing.T) {
			t.Parallel()
			rabbit := needCtl(t)
			exchange := brokertest.Name(t, "events")
			queue := brokertest.Name(t, "lab13")
			connName := brokertest.Name(t, "conn")
			deleteAfter(t, rabbit.URL, exchange, queue)

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var cancelled time.Time
			observe := func(step string, _ report) {
				if step == at {
					cancelled = time.Now()
					cancel()
				}
			}
			args := []string{"-url", rabbit.URL, "-exchange", exchange, "-queue", queue, "-conn-name", connName}
			if tc.keep {
				args = append(args, "-keep")
			}
			var out bytes.Buffer
			err := runProbed(ctx, args, &out, rabbit.Ctl, observe)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("run = %v, want context.Canceled\n%s", err, out.String())
			}
			if took := time.Since(cancelled); took > 3*time.Second {
				t.Errorf("run took %v to stop after the cancel", took)
			}
			errQueue, errExchange := passiveErr(rabbit.URL, queue), exchangeErr(rabbit.URL, exchange)
			switch {
			case !tc.keep && (errQueue == nil || errExchange == nil):
				t.Errorf("after the interrupted run, queue %s: %v, exchange %s: %v; want both gone", queue, errQueue, exchange, errExchange)
			case tc.keep && (errQueue != nil || errExchange != nil):
				t.Errorf("after the interrupted run with -keep, queue %s: %v, exchange %s: %v; want both still there", queue, errQueue, exchange, errExchange)
			}
			noConnections(t, rabbit, connName)
		})
	}
}

// TestSetupErrors checks that the usual mistakes give one clear sentence,
// an error (so main exits 1) and no output, and never show the password.
func TestSetupErrors(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	wrong, err := url.Parse(rabbit.URL)
	if err != nil {
		t.Fatal(err)
	}
	wrong.User = url.UserPassword(wrong.User.Username(), "wrong-password")
	noCtl := func(context.Context, ...string) (string, error) {
		return "", errors.New("rabbitmqctl must not be called")
	}
	tests := []struct {
		name string
		args []string
		ctl  ctlFunc
		want string
	}{
		{"malformed URL", []string{"-url", "amqp://guest:wrong-password%zz@127.0.0.1:5672/"}, noCtl, "the AMQP URL in -url or AMQP_URL is malformed"},
		{"wrong credentials", []string{"-url", wrong.String()}, noCtl, "refused the user name or password"},
		{"nothing listening", []string{"-url", "amqp://guest:wrong-password@" + brokertest.ClosedPort(t) + "/"}, noCtl, "nothing is listening there"},
		{"no rabbitmqctl", []string{"-url", rabbit.URL, "-rabbitmqctl", "/nonexistent/rabbitmqctl"}, nil, "cannot be run"},
		{"stray argument", []string{"-url", rabbit.URL, "part3"}, noCtl, "unexpected arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var out bytes.Buffer
			args := append(tc.args, "-queue", brokertest.Name(t, "never"), "-exchange", brokertest.Name(t, "never"))
			err := runProbed(ctx, args, &out, tc.ctl, func(string, report) {})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run = %v, want an error containing %q", err, tc.want)
			}
			if msg := err.Error(); strings.Contains(msg, "wrong-password") || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line that hides the password", msg)
			}
			if out.Len() != 0 {
				t.Errorf("printed %q before failing; want nothing", out.String())
			}
		})
	}
}

// TestCtrlCStopsTheDial: a server that accepts the connection and never
// answers must not hold the lab for the whole dial timeout (5 s), deaf to
// Ctrl-C: run stops as soon as ctx ends, with ctx's error (main exits
// 130), prints nothing and never reaches rabbitmqctl.
func TestCtrlCStopsTheDial(t *testing.T) {
	t.Parallel()
	const patience = 200 * time.Millisecond // the Ctrl-C comes this long into the dial
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	noCtl := func(context.Context, ...string) (string, error) {
		return "", errors.New("rabbitmqctl must not be called")
	}
	args := []string{"-url", "amqp://guest:guest@" + brokertest.SilentPort(t) + "/",
		"-queue", brokertest.Name(t, "never"), "-exchange", brokertest.Name(t, "never")}
	start := time.Now()
	var out bytes.Buffer
	err := runProbed(ctx, args, &out, noCtl, func(string, report) {})
	if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > 2*time.Second {
		t.Errorf("run against a server that never answers, with ctx ending after %v, returned after %v with %v; want ctx's error at once", patience, took.Round(time.Millisecond), err)
	}
	if out.Len() != 0 {
		t.Errorf("printed %q; want nothing", out.String())
	}
}

// needCtl returns the broker, or skips when rabbitmqctl cannot reach it
// (AMQP_URL on another machine): this lab's outages need it. rabbitmqctl
// failing otherwise is a failure.
func needCtl(t *testing.T) *brokertest.RabbitMQ {
	t.Helper()
	rabbit := brokertest.AMQP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := rabbit.Ctl(ctx, "--quiet", "list_connections", "pid"); err != nil {
		if errors.Is(err, brokertest.ErrNoCtl) {
			t.Skipf("this lab closes connections with rabbitmqctl, which this broker does not offer: %v", err)
		}
		t.Fatalf("asking rabbitmqctl for the connections: %v", err)
	}
	return rabbit
}

// mustReport returns the report the program gave at step.
func mustReport(t *testing.T, reports map[string]report, step string) report {
	t.Helper()
	r, ok := reports[step]
	if !ok {
		t.Fatalf("the program never reported step %q", step)
	}
	return r
}

// passive asks the broker about a queue on a connection of the test's own.
func passive(t *testing.T, amqpURL, queue string) amqp.Queue {
	t.Helper()
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatalf("dialing %s: %v", brokertest.Redact(amqpURL), err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("opening a channel: %v", err)
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("asking for queue %s: %v", queue, err)
	}
	return q
}

// passiveErr is the error of a passive declare: nil when the queue exists.
func passiveErr(amqpURL, queue string) error {
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		return fmt.Errorf("dialing: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	_, err = ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	return err
}

// exchangeErr is the error of a passive declare of the exchange: nil when
// it exists.
func exchangeErr(amqpURL, exchange string) error {
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		return fmt.Errorf("dialing: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	return ch.ExchangeDeclarePassive(exchange, amqp.ExchangeTopic, true, false, false, false, nil)
}

// peekIDs reads every message in the queue without acking it, closes its
// connection (the broker puts them all back) and waits until the queue
// counts them again, so the program goes on with the queue as it was.
func peekIDs(t *testing.T, amqpURL, queue string) []string {
	t.Helper()
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatalf("dialing %s: %v", brokertest.Redact(amqpURL), err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("opening a channel: %v", err)
	}
	var ids []string
	for {
		d, ok, err := ch.Get(queue, false /* auto-ack */)
		if err != nil {
			t.Fatalf("reading queue %s: %v", queue, err)
		}
		if !ok {
			break
		}
		ids = append(ids, d.MessageId)
	}
	_ = conn.Close()
	brokertest.Eventually(t, 10*time.Second, func() error {
		if q := passive(t, amqpURL, queue); q.Messages != len(ids) {
			return fmt.Errorf("queue %s counts %d ready messages after the peek, want %d back", queue, q.Messages, len(ids))
		}
		return nil
	})
	return ids
}

// totalMessages asks rabbitmqctl for a queue's messages, ready and unacked
// together (AMQP alone reports only the ready ones).
func totalMessages(t *testing.T, rabbit *brokertest.RabbitMQ, queue string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	text, err := rabbit.Ctl(ctx, "--quiet", "list_queues", "--no-table-headers", "name", "messages")
	if err != nil {
		t.Fatalf("asking rabbitmqctl for the queues: %v", err)
	}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == queue {
			n, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("unexpected rabbitmqctl line %q", line)
			}
			return n
		}
	}
	t.Fatalf("rabbitmqctl does not list queue %s", queue)
	return 0
}

// noConnections waits until the broker lists no connection whose name
// starts with prefix: the lab closed all it opened.
func noConnections(t *testing.T, rabbit *brokertest.RabbitMQ, prefix string) {
	t.Helper()
	brokertest.Eventually(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		list, err := rabbit.Ctl(ctx, "--quiet", "list_connections", "--no-table-headers", "client_properties")
		if err != nil {
			return err
		}
		if n := strings.Count(list, `{"connection_name","`+prefix); n > 0 {
			return fmt.Errorf("%d connections named %s* are still open", n, prefix)
		}
		return nil
	})
}

// deleteAfter deletes, when the test ends, what a run with these names may
// have declared.
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
		_, _ = ch.QueueDelete(queue, false, false, false)
		_ = ch.ExchangeDelete(exchange, false, false)
	})
}

// scriptCtl writes a shell script of body to stand in for rabbitmqctl
// and returns the lab's ctlFunc for it, and the script's path.
func scriptCtl(t *testing.T, body string) (ctlFunc, string) {
	t.Helper()
	script := filepath.Join(t.TempDir(), "ctl")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	ctl, err := commandCtl(script)
	if err != nil {
		t.Fatal(err)
	}
	return ctl, script
}

// TestCtlStopsSoonOnCtrlC: Ctrl-C during a rabbitmqctl call ends it at
// once. rabbitmqctl is a script whose Erlang process keeps the output
// open after the script is killed; the lab used to wait for it (2 s, or
// as long as the child lives: 30 s here).
func TestCtlStopsSoonOnCtrlC(t *testing.T) {
	ctl, script := scriptCtl(t, "touch \"$0.started\"\nsleep 30 &\nsleep 30\n")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := ctl(ctx, "list_connections")
		done <- err
	}()
	brokertest.Eventually(t, 10*time.Second, func() error {
		_, err := os.Stat(script + ".started")
		return err
	})
	cancel() // Ctrl-C while it runs
	if err := brokertest.Receive(t, done, time.Second, "the rabbitmqctl call did not end within 1 s of Ctrl-C"); err == nil {
		t.Error("the interrupted call returned no error")
	}
}

// TestCtlSucceedsWhenAChildHoldsTheOutput: a rabbitmqctl that succeeds
// but leaves a process holding its output (the 100 ms WaitDelay above
// cuts the wait) is a success, with what it printed.
func TestCtlSucceedsWhenAChildHoldsTheOutput(t *testing.T) {
	ctl, _ := scriptCtl(t, "echo listed\nsleep 30 &\n")
	out, err := ctl(context.Background(), "list_connections")
	if err != nil || out != "listed\n" {
		t.Errorf("ctl = %q, %v; want \"listed\\n\" and no error", out, err)
	}
}
