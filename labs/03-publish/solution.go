//go:build !exercise

package main

import (
	"context"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
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
// This is the lab's exercise: exercise.go holds the template, and
// go test -tags exercise ./labs/03-publish checks it.
func publishMandatory(ctx context.Context, conn *amqp.Connection, exchange string, msgs []outgoing) ([]fate, error) {
	// Open a channel of its own, and close it when done: a NotifyReturn
	// listener stays registered until its channel closes, and the library
	// hands every return to every listener, waiting up to 5 s for a full
	// one while the whole connection stalls. A listener left behind on a
	// shared channel would fill up with returns nobody reads.
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("opening a channel to publish on: %w", err)
	}
	defer ch.Close()

	// Put the channel in confirm mode: the broker acks or nacks every
	// message published on it from now on. (Without it, a publish hands
	// back a nil confirmation, and waiting on it panics.)
	if err := ch.Confirm(false /* no-wait */); err != nil {
		return nil, fmt.Errorf("enabling publisher confirms: %w", err)
	}

	// Register for returned messages before publishing, with room for all
	// of them. The buffer is required: the broker sends a message's return
	// just before its ack, and the library hands the return over before it
	// reads the ack. With no room, and nobody receiving while we wait for
	// confirms, it waits 5 s, drops the return, and the message looks
	// delivered.
	returns := ch.NotifyReturn(make(chan amqp.Return, len(msgs)))

	// Publish each message with mandatory set, and keep its deferred
	// confirmation.
	confirms := make([]*amqp.DeferredConfirmation, len(msgs))
	for i, m := range msgs {
		confirms[i], err = ch.PublishWithDeferredConfirmWithContext(ctx, exchange, m.key,
			true,  // mandatory: hand the message back if no queue is bound for its key
			false, // immediate: RabbitMQ does not support it
			m.msg)
		if err != nil {
			return nil, fmt.Errorf("publishing %s: %w", m.msg.MessageId, err)
		}
	}

	// Wait for every confirm: true is an ack, false a nack.
	fates := make([]fate, len(msgs))
	for i, dc := range confirms {
		acked, err := dc.WaitContext(ctx)
		if err != nil {
			return nil, fmt.Errorf("waiting for the confirm of %s: %w", msgs[i].msg.MessageId, err)
		}
		fates[i] = fate{id: msgs[i].msg.MessageId, acked: acked}
	}

	// Collect the returns. The broker sends a message's basic.return before
	// its ack, so now that every confirm is in, every return is already
	// waiting in the channel. Take what is there without waiting for more
	// (ranging over it would block: it stays open until the channel
	// closes). Match them to the messages by MessageId; the reason is the
	// return's reply code and text, such as "312 NO_ROUTE".
	for {
		select {
		case r := <-returns:
			for i := range fates {
				if fates[i].id == r.MessageId {
					fates[i].returned = true
					fates[i].reason = fmt.Sprintf("%d %s", r.ReplyCode, r.ReplyText)
				}
			}
		default:
			return fates, nil
		}
	}
}
