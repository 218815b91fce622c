package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labtest"
)

func TestMain(m *testing.M) { brokertest.Main(m) }

// docs are the files whose "Expected output" block the program must print.
var docs = []string{"README.md", "../../docs/01-connect.md"}

// TestConnectPrintsWhatTheBrokerReports runs the lab and checks, with a
// connection of our own, that what it printed is what the broker reports.
func TestConnectPrintsWhatTheBrokerReports(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var buf bytes.Buffer
	connName := brokertest.Name(t, "conn")
	if err := run(ctx, []string{"-url", rabbit.URL, "-conn-name", connName}, &buf); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, buf.String())
	}

	// The lab declares nothing, so all it could leave behind is its
	// connection: the broker must not list it any more. Only a broker
	// without rabbitmqctl (AMQP_URL on another machine) skips this part.
	if _, err := rabbit.Ctl(ctx, "-q", "list_connections", "pid"); errors.Is(err, brokertest.ErrNoCtl) {
		t.Logf("skipping the check that the connection is gone: %v", err)
	} else {
		brokertest.Eventually(t, 10*time.Second, func() error {
			list, err := rabbit.Ctl(ctx, "-q", "list_connections", "client_properties")
			if err != nil {
				return fmt.Errorf("listing connections with rabbitmqctl: %w", err)
			}
			if strings.Contains(list, `{"connection_name","`+connName+`"}`) {
				return fmt.Errorf("the broker still lists the lab's connection %s after the run", connName)
			}
			return nil
		})
	}

	// Ask the broker ourselves.
	conn, err := amqp.Dial(rabbit.URL)
	if err != nil {
		t.Fatalf("dialing the broker ourselves: %v", err)
	}
	defer conn.Close()
	if got := conn.Properties["product"]; got != "RabbitMQ" {
		t.Errorf("the broker reports product %q, want RabbitMQ", got)
	}
	wantServer := fmt.Sprintf("server: %v %v on %v, AMQP %d-%d",
		conn.Properties["product"], conn.Properties["version"], conn.Properties["platform"], conn.Major, conn.Minor)
	wantLimits := fmt.Sprintf("negotiated: channel max %d, frame max %d bytes, heartbeat %v",
		conn.Config.ChannelMax, conn.Config.FrameSize, conn.Config.Heartbeat)
	for _, want := range []string{wantServer, wantLimits} {
		if !strings.Contains(buf.String(), want+"\n") {
			t.Errorf("the output lacks %q\noutput:\n%s", want, buf.String())
		}
	}

	labtest.CheckOutput(t, buf.String(), docs, brokertest.Redact(rabbit.URL), brokertest.Redact(brokertest.DefaultAMQPURL))
}

// TestDialFailuresExplainThemselves checks that each way of failing to
// connect ends in one clear sentence, an error (so main exits 1) and no
// output, and never shows the password.
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
		{"wrong scheme", "http://guest:" + secret + "@127.0.0.1:5672/", "the AMQP URL in -url or AMQP_URL is malformed"},
		{"wrong credentials", wrongPassword.String(), "the broker refused the user name or password"},
		{"broker down", "amqp://guest:" + secret + "@" + brokertest.ClosedPort(t) + "/", "nothing is listening there"},
		{"not a broker", "amqp://guest:" + secret + "@" + notABroker(t) + "/", "it does not speak AMQP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var buf bytes.Buffer
			err := run(ctx, []string{"-url", tt.url}, &buf)
			if err == nil {
				t.Fatalf("run succeeded; want an error saying %q\noutput:\n%s", tt.want, buf.String())
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not say %q", msg, tt.want)
			}
			if strings.Contains(msg, secret) {
				t.Errorf("error %q shows the password", msg)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error %q spans several lines; want one sentence", msg)
			}
			if buf.Len() != 0 {
				t.Errorf("printed %q before failing; want nothing", buf.String())
			}
		})
	}
}

// TestCtrlCStopsTheDial: a server that accepts the connection and never
// answers held the program for the whole dialTimeout (5 s), deaf to
// Ctrl-C. Now it stops as soon as ctx ends, with ctx's error (main exits
// 130), and prints nothing.
func TestCtrlCStopsTheDial(t *testing.T) {
	t.Parallel()
	const patience = 200 * time.Millisecond // the Ctrl-C comes this long into the dial
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	start := time.Now()
	var buf bytes.Buffer
	err := run(ctx, []string{"-url", "amqp://guest:guest@" + brokertest.SilentPort(t) + "/"}, &buf)
	if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > dialTimeout/2 {
		t.Errorf("run against a server that never answers, with ctx ending after %v, returned after %v with %v; want ctx's error at once", patience, took.Round(time.Millisecond), err)
	}
	if buf.Len() != 0 {
		t.Errorf("printed %q; want nothing", buf.String())
	}
}

// TestHoldLearnsThatTheBrokerClosedTheConnection closes the lab's connection
// from the broker side and checks that NotifyClose told the program.
func TestHoldLearnsThatTheBrokerClosedTheConnection(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := rabbit.Ctl(ctx, "-q", "list_connections", "pid"); err != nil {
		// Only a broker without rabbitmqctl (AMQP_URL on another machine)
		// is a reason to skip; rabbitmqctl failing is a failure.
		if errors.Is(err, brokertest.ErrNoCtl) {
			t.Skipf("this test closes a connection with rabbitmqctl, which this broker does not offer: %v", err)
		}
		t.Fatalf("asking rabbitmqctl for the connections: %v", err)
	}

	name := brokertest.Name(t, "conn")
	out := &labtest.Buffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-url", rabbit.URL, "-conn-name", name, "-hold"}, out) }()
	awaitHolding(t, out, done)

	// Close only our own connection, found by its unique name: the broker is
	// shared with other tests.
	pid := connectionPID(ctx, t, rabbit, name)
	const reason = "closed by the 01-connect test"
	if _, err := rabbit.Ctl(ctx, "close_connection", pid, reason); err != nil {
		t.Fatalf("closing the lab's connection: %v", err)
	}

	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "lost the connection") {
			t.Errorf("run returned %v; want an error saying it lost the connection", err)
		}
	case <-ctx.Done():
		t.Fatal("run did not return after the broker closed its connection")
	}
	want := fmt.Sprintf("NotifyClose: the broker closed the connection: CONNECTION_FORCED - %s (code %d)\n", reason, amqp.ConnectionForced)
	if !strings.Contains(out.String(), want) {
		t.Errorf("the output lacks %q\noutput:\n%s", want, out.String())
	}
}

// TestHoldClosesCleanlyOnCtrlC cancels the context, as Ctrl-C does, and
// checks that the program closes cleanly and returns nil.
func TestHoldClosesCleanlyOnCtrlC(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	out := &labtest.Buffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-url", rabbit.URL, "-hold"}, out) }()
	awaitHolding(t, out, done)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after Ctrl-C: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return within 10 s of Ctrl-C")
	}
	if !strings.HasSuffix(out.String(), "NotifyClose: closed without an error, so the close was ours\n") {
		t.Errorf("the output does not end with the clean close\noutput:\n%s", out.String())
	}
}

// awaitHolding waits until the lab says it holds its connection; if run
// returns first (the untouched exercise's ErrTODO, say), it fails at once
// with what run returned, instead of waiting out the deadline.
func awaitHolding(t *testing.T, out *labtest.Buffer, done <-chan error) {
	t.Helper()
	brokertest.Eventually(t, 10*time.Second, func() error {
		select {
		case err := <-done:
			t.Fatalf("run returned before holding the connection: %v\noutput:\n%s", err, out.String())
		default:
		}
		if !strings.Contains(out.String(), "holding the connection open") {
			return fmt.Errorf("the lab has not started holding yet; output so far:\n%s", out.String())
		}
		return nil
	})
}

// connectionPID finds the broker's process id of the connection with the
// given connection_name client property.
func connectionPID(ctx context.Context, t *testing.T, rabbit *brokertest.RabbitMQ, name string) string {
	t.Helper()
	var pid string
	brokertest.Eventually(t, 20*time.Second, func() error {
		list, err := rabbit.Ctl(ctx, "-q", "list_connections", "pid", "client_properties")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(list, "\n") {
			if strings.Contains(line, `{"connection_name","`+name+`"}`) {
				pid, _, _ = strings.Cut(line, "\t")
				return nil
			}
		}
		return fmt.Errorf("no connection named %s in:\n%s", name, list)
	})
	return pid
}

// notABroker returns host:port of a local server that answers the AMQP
// protocol header the way a web server would, and hangs up.
func notABroker(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return // the listener was closed
			}
			header := make([]byte, 8) // "AMQP" 0 0 9 1
			_, _ = io.ReadFull(conn, header)
			_, _ = conn.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
			_ = conn.Close()
		}
	}()
	return ln.Addr().String()
}
