package brokertest

import (
	"context"
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
