package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
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

// docs are the files whose "Expected output" block the program must print.
var docs = []string{"README.md", "../../docs/02-declare-exchange.md"}

// TestDeclareExchange runs the lab twice on a unique exchange name, first
// without -keep (the exchange is gone afterwards), then with -keep, and then
// checks with a connection of its own what the broker holds.
func TestDeclareExchange(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	name := brokertest.Name(t, "events")
	conn := openConn(t, rabbit.URL)
	t.Cleanup(func() { cleanupExchange(t, rabbit.URL, name) })

	// The program's output matches the docs, and a second run, with -keep,
	// prints the same lines but the last two: declaring is idempotent.
	uri, err := amqp.ParseURI(rabbit.URL)
	if err != nil {
		t.Fatalf("parsing the broker URL: %v", err)
	}
	replacements := []string{name, "lab02.events",
		brokertest.Redact(rabbit.URL), brokertest.Redact(brokertest.DefaultAMQPURL),
		"in vhost '" + uri.Vhost + "'", "in vhost '/'"}
	port := regexp.MustCompile(`local port \d+`)
	var outputs [2][]string
	for i, keep := range []bool{false, true} {
		args := []string{"-url", rabbit.URL, "-exchange", name}
		if keep {
			args = append(args, "-keep")
		}
		var buf bytes.Buffer
		if err := run(ctx, args, &buf); err != nil {
			t.Fatalf("run %d: %v\noutput:\n%s", i+1, err, buf.String())
		}
		if !keep {
			labtest.CheckOutput(t, buf.String(), docs, replacements...)
		}
		outputs[i] = strings.Split(port.ReplaceAllString(strings.NewReplacer(replacements...).Replace(buf.String()), "local port N"), "\n")

		// The same local port before and after the refusal: the program
		// kept its one TCP connection and only replaced the channel.
		ports := regexp.MustCompile(`local port (\d+)`).FindAllStringSubmatch(buf.String(), -1)
		if len(ports) != 2 || ports[0][1] != ports[1][1] {
			t.Errorf("run %d: want the same local port twice (one connection throughout), got %v", i+1, ports)
		}

		// Without -keep the exchange is gone; with -keep it stays.
		err := channel(t, conn).ExchangeDeclarePassive(name, "topic", true, false, false, false, nil)
		var amqpErr *amqp.Error
		switch {
		case !keep && (!errors.As(err, &amqpErr) || amqpErr.Code != amqp.NotFound):
			t.Errorf("after a run without -keep, a passive declare of %s got %v; want 404, the lab deletes its exchange", name, err)
		case keep && err != nil:
			t.Fatalf("after a run with -keep, a passive declare of %s got %v; want the exchange still there", name, err)
		}
	}
	wantKept := `kept exchange "lab02.events" (-keep): a run without -keep deletes it`
	if n := len(outputs[0]); len(outputs[1]) != n || !slices.Equal(outputs[0][:n-3], outputs[1][:n-3]) || outputs[1][n-3] != wantKept {
		t.Errorf("the -keep run should print what the first run printed, with %q instead of its cleanup line:\n--- first ---\n%s\n--- -keep ---\n%s",
			wantKept, strings.Join(outputs[0], "\n"), strings.Join(outputs[1], "\n"))
	}

	// The exchange exists: a passive declare succeeds.
	ch := channel(t, conn)
	if err := ch.ExchangeDeclarePassive(name, "topic", true, false, false, false, nil); err != nil {
		t.Fatalf("passive declare of %s: %v", name, err)
	}
	// It is exactly a durable, not auto-delete, not internal topic exchange:
	// an active declare with that description succeeds...
	if err := ch.ExchangeDeclare(name, "topic", true, false, false, false, nil); err != nil {
		t.Fatalf("redeclaring %s as a durable topic exchange: %v", name, err)
	}
	// ...and one that differs in type or durability is refused with 406,
	// which closes that channel and leaves our connection open.
	for _, variant := range []struct {
		kind    string
		durable bool
		arg     string
	}{
		{"direct", true, "type"},
		{"topic", false, "durable"},
	} {
		ch := channel(t, conn)
		err := ch.ExchangeDeclare(name, variant.kind, variant.durable, false, false, false, nil)
		var amqpErr *amqp.Error
		if !errors.As(err, &amqpErr) || amqpErr.Code != amqp.PreconditionFailed || !strings.Contains(amqpErr.Reason, "'"+variant.arg+"'") {
			t.Errorf("declaring %s as %s, durable %t: got %v; want 406 about %q", name, variant.kind, variant.durable, err, variant.arg)
		}
		if !ch.IsClosed() {
			t.Errorf("after the 406 our channel is still open; the broker should have closed it")
		}
		if conn.IsClosed() {
			t.Fatalf("after the 406 our connection is closed; a channel error must not close it")
		}
	}
	// The connection still works: a new channel on it answers.
	if err := channel(t, conn).ExchangeDeclarePassive(name, "topic", true, false, false, false, nil); err != nil {
		t.Errorf("passive declare on a new channel after the refusals: %v", err)
	}

	// The program created nothing else: its ".missing" name does not exist.
	err = channel(t, conn).ExchangeDeclarePassive(name+".missing", "topic", true, false, false, false, nil)
	if amqpErr := (*amqp.Error)(nil); !errors.As(err, &amqpErr) || amqpErr.Code != amqp.NotFound {
		t.Errorf("passive declare of %s.missing: got %v; want 404", name, err)
	}

	// Where rabbitmqctl is available, read the flags from the broker's own
	// listing as well. Only a broker without it (AMQP_URL on another
	// machine) skips this part; rabbitmqctl failing is a failure.
	list, err := rabbit.Ctl(ctx, "-q", "list_exchanges", "name", "type", "durable", "auto_delete", "internal")
	if err != nil {
		if errors.Is(err, brokertest.ErrNoCtl) {
			t.Logf("skipping the rabbitmqctl listing: %v", err)
			return
		}
		t.Fatalf("listing the exchanges with rabbitmqctl: %v", err)
	}
	want := strings.Join([]string{name, "topic", "true", "false", "false"}, "\t")
	if !containsLine(list, want) {
		t.Errorf("rabbitmqctl list_exchanges has no line %q:\n%s", want, list)
	}
}

// TestExchangeInUseIsNotDeleted points the lab at an exchange a queue is
// bound to: the lab's if-unused delete is refused, the run still succeeds,
// and the exchange and its binding are still there.
func TestExchangeInUseIsNotDeleted(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := brokertest.Name(t, "events")
	conn := openConn(t, rabbit.URL)
	t.Cleanup(func() { cleanupExchange(t, rabbit.URL, name) })
	ch := channel(t, conn)
	if err := ch.ExchangeDeclare(name, "topic", true, false, false, false, nil); err != nil {
		t.Fatalf("declaring %s: %v", name, err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatalf("declaring a queue: %v", err)
	}
	if err := ch.QueueBind(q.Name, "#", name, false, nil); err != nil {
		t.Fatalf("binding %s to %s: %v", q.Name, name, err)
	}

	var buf bytes.Buffer
	if err := run(ctx, []string{"-url", rabbit.URL, "-exchange", name}, &buf); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, buf.String())
	}
	want := fmt.Sprintf("kept exchange %q: queues are bound to it, so the if-unused delete was refused\n", name)
	if !strings.Contains(buf.String(), want) {
		t.Errorf("the output does not say %q:\n%s", want, buf.String())
	}
	// The binding still routes: a message published to the exchange
	// reaches the queue.
	if err := ch.PublishWithContext(ctx, name, "event.created", false, false, amqp.Publishing{Body: []byte("still bound")}); err != nil {
		t.Fatalf("publishing to %s: %v", name, err)
	}
	brokertest.Eventually(t, 5*time.Second, func() error {
		d, ok, err := ch.Get(q.Name, true)
		switch {
		case err != nil:
			return err
		case !ok:
			return fmt.Errorf("queue %s is empty: the exchange or its binding is gone", q.Name)
		case string(d.Body) != "still bound":
			return fmt.Errorf("queue %s got %q", q.Name, d.Body)
		}
		return nil
	})
}

// TestExistingExchangeOfAnotherType checks the sentence a learner gets when
// the name is taken by an exchange with other arguments.
func TestExistingExchangeOfAnotherType(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := brokertest.Name(t, "events")
	conn := openConn(t, rabbit.URL)
	t.Cleanup(func() { cleanupExchange(t, rabbit.URL, name) })
	if err := channel(t, conn).ExchangeDeclare(name, "fanout", true, false, false, false, nil); err != nil {
		t.Fatalf("declaring %s as fanout: %v", name, err)
	}

	var buf bytes.Buffer
	err := run(ctx, []string{"-url", rabbit.URL, "-exchange", name}, &buf)
	if err == nil || !strings.Contains(err.Error(), "already exists with other arguments") {
		t.Fatalf("run returned %v; want an error saying the exchange exists with other arguments", err)
	}
	// The program changed nothing and deleted nothing: it is still a
	// fanout exchange.
	if err := channel(t, conn).ExchangeDeclare(name, "fanout", true, false, false, false, nil); err != nil {
		t.Errorf("%s is no longer the fanout exchange we declared: %v", name, err)
	}
}

// TestDialFailuresExplainThemselves checks that each way of failing to
// connect ends in one clear sentence, an error and no output, without the
// password.
func TestDialFailuresExplainThemselves(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	const secret = "s3cret-not-shown"
	wrongPassword, err := url.Parse(rabbit.URL)
	if err != nil {
		t.Fatalf("parsing the broker URL: %v", err)
	}
	wrongPassword.User = url.UserPassword(wrongPassword.User.Username(), secret)

	tests := []struct {
		name string
		url  string
		want string
	}{
		{"malformed URL", "amqp://guest:" + secret + "%zz@127.0.0.1:5672/", "the AMQP URL in -url or AMQP_URL is malformed"},
		{"wrong credentials", wrongPassword.String(), "the broker refused the user name or password"},
		{"broker down", "amqp://guest:" + secret + "@" + brokertest.ClosedPort(t) + "/", "nothing is listening there"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var buf bytes.Buffer
			err := run(ctx, []string{"-url", tt.url, "-exchange", brokertest.Name(t, "events")}, &buf)
			if err == nil {
				t.Fatalf("run succeeded; want an error saying %q\noutput:\n%s", tt.want, buf.String())
			}
			if msg := err.Error(); !strings.Contains(msg, tt.want) || strings.Contains(msg, secret) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line that says %q and hides the password", msg, tt.want)
			}
			if buf.Len() != 0 {
				t.Errorf("printed %q before failing; want nothing", buf.String())
			}
		})
	}
}

// TestCtrlCStopsTheDial: a server that accepts the connection and never
// answers held the program for the whole dial timeout (5 s), deaf to
// Ctrl-C. Now it stops as soon as ctx ends, with ctx's error (main exits
// 130), and prints nothing.
func TestCtrlCStopsTheDial(t *testing.T) {
	t.Parallel()
	const patience = 200 * time.Millisecond // the Ctrl-C comes this long into the dial
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	start := time.Now()
	var buf bytes.Buffer
	err := run(ctx, []string{"-url", "amqp://guest:guest@" + brokertest.SilentPort(t) + "/", "-exchange", brokertest.Name(t, "events")}, &buf)
	if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > 2*time.Second {
		t.Errorf("run against a server that never answers, with ctx ending after %v, returned after %v with %v; want ctx's error at once", patience, took.Round(time.Millisecond), err)
	}
	if buf.Len() != 0 {
		t.Errorf("printed %q; want nothing", buf.String())
	}
}

// openConn opens a connection of the test's own, closed when the test ends.
func openConn(t *testing.T, rawURL string) *amqp.Connection {
	t.Helper()
	conn, err := amqp.Dial(rawURL)
	if err != nil {
		t.Fatalf("dialing the broker: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// channel opens a channel on conn. A channel the broker closes after an
// error is not reused.
func channel(t *testing.T, conn *amqp.Connection) *amqp.Channel {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("opening a channel: %v", err)
	}
	return ch
}

// cleanupExchange removes an exchange the test created, on a fresh
// connection.
func cleanupExchange(t *testing.T, rawURL, name string) {
	conn, err := amqp.Dial(rawURL)
	if err != nil {
		t.Errorf("cleanup: dialing to delete %s: %v", name, err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Errorf("cleanup: opening a channel to delete %s: %v", name, err)
		return
	}
	if err := ch.ExchangeDelete(name, false, false); err != nil {
		t.Errorf("cleanup: deleting %s: %v", name, err)
	}
}

// containsLine reports whether text has a line equal to line.
func containsLine(text, line string) bool {
	for _, l := range strings.Split(text, "\n") {
		if strings.TrimRight(l, "\r") == line {
			return true
		}
	}
	return false
}
