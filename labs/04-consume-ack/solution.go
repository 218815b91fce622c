//go:build !exercise

package main

import (
	"context"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
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
// This is the lab's exercise: exercise.go holds the template, and
// go test -tags exercise ./labs/04-consume-ack checks it.
func consumeN(ctx context.Context, conn *amqp.Connection, queue string, n, prefetch int, process func(amqp.Delivery) error) ([]settled, error) {
	// Open a channel of its own, and close it on the way out: closing it
	// ends the consumer, and the broker requeues what it left unsettled.
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("opening a consumer channel: %w", err)
	}
	defer ch.Close()

	// Set the prefetch: the broker sends at most this many unacked
	// deliveries to each consumer on this channel (global=false: per
	// consumer, not per channel).
	if err := ch.Qos(
		prefetch, // prefetch count
		0,        // prefetch size: no byte limit
		false,    // global: off, the limit is per consumer
	); err != nil {
		return nil, fmt.Errorf("setting prefetch %d: %w", prefetch, err)
	}

	// Start consuming with manual acks. (Consume, not ConsumeWithContext:
	// the latter cancels the consumer from a goroutine of its own when ctx
	// ends, racing our Close; next watches ctx instead.)
	deliveries, err := ch.Consume(queue,
		"",    // consumer tag: let the library pick a unique one
		false, // auto-ack: off, we ack after processing
		false, // exclusive
		false, // no-local
		false, // no-wait
		nil,   // args
	)
	if err != nil {
		return nil, fmt.Errorf("consuming queue %s: %w", queue, err)
	}

	// Settle n deliveries, one at a time.
	var results []settled
	for len(results) < n {
		// Wait for the next delivery (next gives up when ctx ends, when the
		// channel closes, or after waitTimeout).
		d, err := next(ctx, deliveries)
		if err != nil {
			return results, fmt.Errorf("consuming queue %s: %w", queue, err)
		}

		// Process it, then settle it.
		perr := process(d)
		if perr == nil {
			// Processed: ack it, now that the work is done.
			if err := d.Ack(false /* multiple */); err != nil {
				return results, fmt.Errorf("acking %s: %w", d.MessageId, err)
			}
		} else {
			// Not processable: reject it without requeue, so that the
			// queue dead-letters it.
			if err := d.Reject(false /* requeue */); err != nil {
				return results, fmt.Errorf("rejecting %s: %w", d.MessageId, err)
			}
		}
		results = append(results, settled{id: d.MessageId, redelivered: d.Redelivered, err: perr})
	}
	return results, nil
}
