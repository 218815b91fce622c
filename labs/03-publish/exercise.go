//go:build exercise

package main

import (
	"context"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/labs/labkit"
)

// publishMandatory publishes msgs to exchange with the mandatory flag and
// publisher confirms, and reports what the broker did with each message,
// in the order of msgs:
//
//   - routed: acked and not returned; a queue has it;
//   - returned: no queue was bound for its routing key, so the broker
//     handed it back (and then acked it: an ack alone does not mean routed);
//   - nacked: the broker could not take it, for example because the queue
//     is full and rejects new messages; a real publisher tries again later.
//
// It publishes on a channel of its own, which it closes before it returns.
// Messages are told apart by their MessageId, which the caller sets.
// (The types outgoing and fate are in main.go.)
//
// Exercise: write it, following the steps below. Check it with
//
//	go test -tags exercise ./labs/03-publish
//
// and see it in the program with go run -tags exercise ./labs/03-publish.
// The hints are in docs/exercises.md; the answer is in solution.go.
func publishMandatory(ctx context.Context, conn *amqp.Connection, exchange string, msgs []outgoing) ([]fate, error) {
	// Open a channel of its own, and close it when done: a NotifyReturn
	// listener stays registered until its channel closes, and the library
	// hands every return to every listener, waiting up to 5 s for a full
	// one while the whole connection stalls. A listener left behind on a
	// shared channel would fill up with returns nobody reads.

	// Put the channel in confirm mode: the broker acks or nacks every
	// message published on it from now on. (Without it, a publish hands
	// back a nil confirmation, and waiting on it panics.)

	// Register for returned messages before publishing, with room for all
	// of them. The buffer is required: the broker sends a message's return
	// just before its ack, and the library hands the return over before it
	// reads the ack. With no room, and nobody receiving while we wait for
	// confirms, it waits 5 s, drops the return, and the message looks
	// delivered.

	// Publish each message with mandatory set, and keep its deferred
	// confirmation.

	// Wait for every confirm: true is an ack, false a nack.

	// Collect the returns. The broker sends a message's basic.return before
	// its ack, so now that every confirm is in, every return is already
	// waiting in the channel. Take what is there without waiting for more
	// (ranging over it would block: it stays open until the channel
	// closes). Match them to the messages by MessageId; the reason is the
	// return's reply code and text, such as "312 NO_ROUTE".

	return nil, labkit.TODO("publishMandatory", "publish with mandatory and confirms, then report each message as routed, returned or nacked")
}
