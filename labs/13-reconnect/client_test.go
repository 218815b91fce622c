package main

import (
	"context"
	"errors"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labkit"
)

// TestEndSessionKeepsTheBrokersReason: a session can end (a publish
// fails on the dying socket) before amqp091-go has handled the broker's
// connection.close. amqp091-go keeps the first of the two closes, so a
// Close of ours first drops the broker's reason and the lab waits for it
// in vain ("waiting for the publisher to learn of the outage", seen in
// CI). endSession must let the broker's close come first: here the
// session ends before the broker even starts closing, and the reason
// still arrives.
func TestEndSessionKeepsTheBrokersReason(t *testing.T) {
	t.Parallel()
	rabbit := needCtl(t)
	name := brokertest.Name(t, "conn")
	conn, err := labkit.DialAMQP(rabbit.URL, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	lost := make(chan *amqp.Error, 1)
	told := watchClose(conn, lost)

	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		endSession(ctx, conn, told, errors.New("publishing: the socket is gone"), 2*waitTimeout)
	}()
	if err := closeConnections(ctx, rabbit.Ctl, rabbit.URL, name); err != nil {
		t.Fatal(err)
	}
	reason, err := await(ctx, lost, "waiting for the broker's reason")
	if err != nil {
		t.Fatalf("%v: the session's own Close came first", err)
	}
	if reason.Code != amqp.ConnectionForced || reason.Reason != "CONNECTION_FORCED - "+closeReason {
		t.Errorf("the reason is %v, want 320 CONNECTION_FORCED - %s", reason, closeReason)
	}
	select {
	case <-ended:
	case <-ctx.Done():
		t.Fatal("endSession did not return after the broker's close")
	}
}

// TestEndSessionDoesNotWaitOnACleanEnd: a session that ended without an
// error, or on Ctrl-C, closes at once.
func TestEndSessionDoesNotWaitOnACleanEnd(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	for _, tc := range []struct {
		name   string
		err    error
		cancel bool
	}{{"no error", nil, false}, {"interrupted", context.Canceled, true}} {
		conn, err := labkit.DialAMQP(rabbit.URL, brokertest.Name(t, "conn"))
		if err != nil {
			t.Fatal(err)
		}
		told := watchClose(conn, make(chan *amqp.Error, 1))
		ctx, cancel := context.WithCancel(context.Background())
		if tc.cancel {
			cancel()
		}
		start := time.Now()
		endSession(ctx, conn, told, tc.err, time.Minute)
		cancel()
		if took := time.Since(start); took > 10*time.Second || !conn.IsClosed() {
			t.Errorf("%s: endSession took %v, connection closed %v; want it closed at once", tc.name, took, conn.IsClosed())
		}
	}
}
