package main

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/labs/brokertest"
)

// TestStopAfterAReplyAcksTheRequest stops EventService the moment its
// reply has reached the caller, many times over. The reply reaches the
// caller before EventService has its confirm and acks the request, so a
// stop that abandons a handler at that point leaves an answered request
// to be requeued and answered a second time (a -keep run found one in
// its kept queue). Every answered request must be acked before stop
// returns, and the request queue must be empty.
func TestStopAfterAReplyAcksTheRequest(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	queue := brokertest.Name(t, "lab07")
	deleteAfter(t, rabbit.URL, queue)

	conn := dial(t, rabbit.URL)
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("opening a channel: %v", err)
	}
	if _, err := ch.QueueDeclare(queue, false, false, false, false, amqp.Table{"x-expires": queueTTL.Milliseconds()}); err != nil {
		t.Fatalf("declaring %s: %v", queue, err)
	}
	srv := newServer(conn, queue)
	defer srv.stop()
	booking, err := newClient(dial(t, rabbit.URL), queue, sequence("req"))
	if err != nil {
		t.Fatal(err)
	}
	defer booking.close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const rounds = 100
	for i := range rounds {
		if err := srv.start(ctx); err != nil {
			t.Fatal(err)
		}
		ctx2, cancel2 := context.WithTimeout(ctx, patience)
		_, err := booking.call(ctx2, "ev-2", "ev-2", "ev-2")
		cancel2()
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		srv.stop()
		srv.mu.Lock()
		_, acked := srv.done[booking.lastID]
		srv.mu.Unlock()
		if !acked {
			t.Fatalf("round %d: the caller had its reply to %s, but stop left the request unacked: it goes back to %s and is answered again", i, booking.lastID, queue)
		}
	}
	q, err := ch.QueueDeclarePassive(queue, false, false, false, false, nil)
	if err != nil {
		t.Fatalf("looking at %s: %v", queue, err)
	}
	if q.Messages != 0 {
		t.Errorf("%s holds %d requests after %d rounds, all answered; want 0", queue, q.Messages, rounds)
	}
}
