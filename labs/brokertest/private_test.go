package brokertest

import (
	"context"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestPrivateAMQP starts a node (or, on the container path, a container)
// of the test's own, stops and starts its
// application as a fault test does, and checks that the node is gone
// after the test while the shared broker never noticed.
func TestPrivateAMQP(t *testing.T) {
	var url string
	t.Run("node", func(t *testing.T) {
		r := PrivateAMQP(t)
		url = r.URL
		if (r.Backend != FromPrivateNode && r.Backend != FromContainer) || strings.Contains(r.URL, ":5672/") {
			t.Fatalf("backend %s at %s, want a private node or container on a port of its own", r.Backend, Redact(r.URL))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := amqp.Dial(r.URL)
		if err != nil {
			t.Fatal(err)
		}
		closed := conn.NotifyClose(make(chan *amqp.Error, 1))
		if _, err := r.Ctl(ctx, "stop_app"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-closed:
		case <-ctx.Done():
			t.Fatal("stop_app did not close the connection")
		}
		if _, err := amqp.Dial(r.URL); err == nil {
			t.Fatal("the node accepts connections after stop_app")
		}
		if _, err := r.Ctl(ctx, "start_app"); err != nil {
			t.Fatal(err)
		}
		Eventually(t, time.Minute, func() error {
			conn, err := amqp.Dial(r.URL)
			if err == nil {
				conn.Close()
			}
			return err
		})
	})
	if url == "" {
		return // skipped: no rabbitmq-server here
	}
	if conn, err := amqp.Dial(url); err == nil {
		conn.Close()
		t.Errorf("the private node still answers at %s after its test", Redact(url))
	}
}

// TestPrivateNodeStartsAgainWhenItsPortIsTaken: a port picked free can be
// taken before the node listens on it, by another package's test in a
// suite that runs them side by side. The node's boot then fails
// (eaddrinuse), and PrivateAMQP waited its full two minutes for it before
// it failed the test. It now sees the failed boot and starts a node on
// other ports. Not parallel: it sets portsPicked, which the package's
// parallel tests, paused until it returns, never see.
func TestPrivateNodeStartsAgainWhenItsPortIsTaken(t *testing.T) {
	t.Run("AMQP", func(t *testing.T) {
		testPortTaken(t, func(n *privateNode) string {
			u, err := url.Parse(n.url)
			if err != nil {
				t.Errorf("the node's URL %s: %v", n.url, err)
			}
			return u.Host
		})
	})
	// The Erlang VM dies on a taken distribution port before it writes a
	// log or a pid file.
	t.Run("distribution", func(t *testing.T) {
		testPortTaken(t, func(n *privateNode) string {
			for _, kv := range n.env {
				if port, ok := strings.CutPrefix(kv, "RABBITMQ_DIST_PORT="); ok {
					return "127.0.0.1:" + port
				}
			}
			t.Error("the node has no RABBITMQ_DIST_PORT")
			return ""
		})
	})
}

// testPortTaken takes the port addr names of the first node that
// startPrivateNode prepares, and wants another node started that answers.
func testPortTaken(t *testing.T, addr func(*privateNode) string) {
	server, ctl, err := rabbitmqScripts()
	if err != nil {
		resolve(t, os.Getenv, errNoBroker{howTo: err.Error()})
	}
	var taken net.Listener
	portsPicked = func(n *privateNode) {
		if taken != nil {
			return
		}
		a := addr(n)
		if taken, err = net.Listen("tcp", a); err != nil {
			t.Errorf("taking the node's port %s: %v", a, err)
		}
	}
	defer func() { portsPicked = nil }()
	n, err := startPrivateNode(t, server, ctl)
	if taken != nil {
		defer taken.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	if taken == nil {
		t.Fatal("no port was taken: the test tested nothing")
	}
	if strings.Contains(n.url, taken.Addr().String()) {
		t.Fatalf("the node answers at %s, the port the test took", Redact(n.url))
	}
	conn, err := amqp.Dial(n.url)
	if err != nil {
		t.Fatalf("the node started on other ports does not answer: %v", err)
	}
	conn.Close()
}
