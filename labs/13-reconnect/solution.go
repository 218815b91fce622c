//go:build !exercise

package main

import (
	"context"
	"fmt"
	"log/slog"

	amqp "github.com/rabbitmq/amqp091-go"
)

// run is the consumer's reconnect loop: a session (c.session: a new
// connection, channel, Qos and Consume) until it breaks, a wait that
// doubles from backoffFirst up to backoffLongest (with jitter, so that many
// consumers do not come back in lockstep), and a new session. It returns
// nil once drained, and ctx's error when ctx ends.
//
// run and deliver are the lab's exercise: exercise.go holds the template,
// and go test -tags exercise ./labs/13-reconnect checks it.
func (c *consumer) run(ctx context.Context) error {
	// Start with the shortest wait.
	bo := backoff{next: backoffFirst, longest: backoffLongest}
	// Loop over sessions, counting them from 0:
	for session := 0; ; session++ {
		// Run one session until it ends. Nothing of an old session is
		// used again: c.session dials anew every time.
		done, consumed, err := c.session(ctx, session)
		// Drained: the consumer was asked to finish.
		if done {
			return nil
		}
		// Ctrl-C: stop, with ctx's error.
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// A session that got as far as consuming was healthy: start the
		// waits over from the shortest.
		if consumed {
			bo = backoff{next: backoffFirst, longest: backoffLongest}
		}
		// Wait (bo.wait), unless ctx ends first (sleep), and go round.
		wait := bo.wait()
		slog.Debug("consumer: session ended; reconnecting", "err", err, "in", wait)
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// deliver processes one delivery of the session whose channel is ch, and
// acks it on that channel. It returns an error only when the ack failed:
// the channel is gone, and the session with it.
func (c *consumer) deliver(ctx context.Context, ch *amqp.Channel, d amqp.Delivery) error {
	// A delivery handed over after its channel closed is stale: the broker
	// has already put the message back and will deliver it on the next
	// channel, and its tag means nothing anywhere else. Drop it
	// unprocessed.
	if ch.IsClosed() {
		return nil
	}
	// Process it (c.handle). A message the handler cannot process is
	// rejected without requeue: a real service dead-letters it (lab 04).
	if err := c.handle(ctx, d); err != nil {
		slog.Warn("consumer: rejecting a message it cannot process", "id", d.MessageId, "err", err)
		_ = d.Reject(false /* requeue */)
		return nil
	}
	// Ack on the channel the delivery came on, after processing: d.Ack
	// does exactly that. If that channel is gone, the ack fails and the
	// message comes again; return the error.
	if err := d.Ack(false /* multiple */); err != nil {
		return fmt.Errorf("acking %s: %w", d.MessageId, err)
	}
	return nil
}
