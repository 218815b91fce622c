//go:build exercise

package main

import (
	"context"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/labs/labkit"
)

// consumeN consumes n deliveries from queue with manual acks, on a channel
// of its own that holds at most prefetch unacked deliveries at a time, and
// settles each one by what process says:
//
//   - process returned nil: ack the delivery, and only then, so that a crash
//     during the work brings the message back;
//   - process returned an error: the message can never be processed (a
//     poison message), so reject it without requeue; the queue's
//     dead-letter exchange takes it, instead of the broker handing it
//     straight back again and again.
//
// It returns what it did with each delivery, in the order they arrived. It
// stops with an error when ctx ends, when no delivery comes within
// waitTimeout, when the channel closes, or when an ack or a reject fails.
// On the way out it closes its channel, so the broker hands whatever it
// did not settle to another consumer. (The type settled, next and
// waitTimeout are in main.go.)
//
// Exercise: write it, following the steps below. Check it with
//
//	go test -tags exercise ./labs/04-consume-ack
//
// and see it in the program with go run -tags exercise ./labs/04-consume-ack.
// The hints are in docs/exercises.md; the answer is in solution.go.
func consumeN(ctx context.Context, conn *amqp.Connection, queue string, n, prefetch int, process func(amqp.Delivery) error) ([]settled, error) {
	// Open a channel of its own, and close it on the way out: closing it
	// ends the consumer, and the broker requeues what it left unsettled.

	// Set the prefetch: the broker sends at most this many unacked
	// deliveries to each consumer on this channel (global=false: per
	// consumer, not per channel).

	// Start consuming with manual acks. (Consume, not ConsumeWithContext:
	// the latter cancels the consumer from a goroutine of its own when ctx
	// ends, racing our Close; next watches ctx instead.)

	// Settle n deliveries, one at a time.

	// Wait for the next delivery (next gives up when ctx ends, when the
	// channel closes, or after waitTimeout).

	// Process it, then settle it.

	// Processed: ack it, now that the work is done.

	// Not processable: reject it without requeue, so that the queue
	// dead-letters it.

	return nil, labkit.TODO("consumeN", "consume with manual acks, ack what was processed, reject poison without requeue")
}
