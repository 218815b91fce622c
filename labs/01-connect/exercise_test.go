package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labkit"
)

// TestExerciseDial checks the lab's exercise, dial, against the real
// broker: it connects under the given name, a wrong password and an absent
// broker each get their own error (and one sentence without the password),
// and other failures are neither of those two.
func TestExerciseDial(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	name := brokertest.Name(t, "conn")

	conn, err := dial(rabbit.URL, name)
	if errors.Is(err, labkit.ErrTODO) {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatalf("dial to the running broker at %s failed: %v", brokertest.Redact(rabbit.URL), err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("the connection dial returned cannot open a channel: %v", err)
	}
	_ = ch.Close()

	// The broker lists the connection under its name.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	named := func() error {
		list, err := rabbit.Ctl(ctx, "-q", "list_connections", "client_properties")
		if err != nil {
			return err
		}
		if !strings.Contains(list, `{"connection_name","`+name+`"}`) {
			return fmt.Errorf("none of the broker's %d connections is named %q: set the name with SetClientConnectionName on amqp.NewConnectionProperties(), in amqp.Config.Properties", strings.Count(list, "\n"), name)
		}
		return nil
	}
	switch err := named(); {
	case errors.Is(err, brokertest.ErrNoCtl):
		t.Logf("rabbitmqctl is not available, so the connection name is not checked: %v", err)
	case err != nil:
		brokertest.Eventually(t, 10*time.Second, named)
	}

	const secret = "s3cret-not-shown"
	wrongPassword, err := url.Parse(rabbit.URL)
	if err != nil {
		t.Fatalf("parsing the broker URL: %v", err)
	}
	wrongPassword.User = url.UserPassword(wrongPassword.User.Username(), secret)

	tests := []struct {
		name   string
		url    string
		sentry error  // the error dial must wrap, or nil for neither
		cause  string // what the broker or the network said
		check  func(error) bool
	}{
		{
			"wrong password", wrongPassword.String(), errLoginRefused,
			"the broker answered 403 ACCESS_REFUSED",
			func(err error) bool {
				var amqpErr *amqp.Error
				return errors.As(err, &amqpErr) && amqpErr.Code == amqp.AccessRefused
			},
		},
		{
			"nothing listening", "amqp://guest:" + secret + "@" + brokertest.ClosedPort(t) + "/", errNoBroker,
			"the TCP connect was refused",
			func(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) },
		},
		{
			"not a broker", "amqp://guest:" + secret + "@" + notABroker(t) + "/", nil,
			"the server there answered with HTTP and hung up",
			isAMQPError,
		},
		{
			"a server that never answers", "amqp://guest:" + secret + "@" + silentServer(t) + "/", nil,
			"the server accepted the TCP connection and never said a word",
			isAMQPError, // the library reports the handshake's timeout as 501 FRAME_ERROR
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			done := make(chan error, 1)
			go func() {
				conn, err := dial(tt.url, brokertest.Name(t, "conn"))
				if err == nil {
					conn.Close()
				}
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(3 * dialTimeout):
				t.Fatalf("dial has not returned after %v (%s): bound the dial and the handshake with amqp.DefaultDial(dialTimeout) in amqp.Config.Dial", 3*dialTimeout, tt.cause)
			}
			if errors.Is(err, labkit.ErrTODO) {
				t.Fatal(err)
			}
			if err == nil {
				t.Fatalf("dial succeeded; want an error (%s)", tt.cause)
			}
			msg := err.Error()
			if !tt.check(err) {
				t.Errorf("dial returned %q, which does not wrap the library's error (%s): wrap it with %%w", msg, tt.cause)
			}
			for _, sentry := range []error{errLoginRefused, errNoBroker} {
				switch {
				case sentry == tt.sentry && !errors.Is(err, sentry):
					t.Errorf("dial returned %q; %s, so want an error that wraps %q (fmt.Errorf with %%w)", msg, tt.cause, sentry)
				case sentry != tt.sentry && errors.Is(err, sentry):
					t.Errorf("dial returned %q, which wraps %q; but %s", msg, sentry, tt.cause)
				}
			}
			if strings.Contains(msg, secret) {
				t.Errorf("dial returned %q, which shows the password: name the broker by redact(rawURL)", msg)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("dial returned %q, which spans several lines; want one sentence", msg)
			}
		})
	}
}

// isAMQPError reports whether err wraps an error of the AMQP library.
func isAMQPError(err error) bool {
	var amqpErr *amqp.Error
	return errors.As(err, &amqpErr)
}

// silentServer returns host:port of a local server that accepts TCP
// connections and never sends a byte, like a broker that hangs.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				for _, c := range conns {
					_ = c.Close()
				}
				return // the listener was closed
			}
			conns = append(conns, conn) // hold it open, say nothing
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}
