//go:build exercise

package main

import (
	"context"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/labs/labkit"
)

// run is the consumer's reconnect loop: a session (c.session: a new
// connection, channel, Qos and Consume) until it breaks, a wait that
// doubles from backoffFirst up to backoffLongest (with jitter, so that many
// consumers do not come back in lockstep), and a new session. It returns
// nil once drained, and ctx's error when ctx ends.
//
// Exercise: write run and deliver, following the steps in each. Check them
// with
//
//	go test -tags exercise ./labs/13-reconnect
//
// and see them in the program with go run -tags exercise ./labs/13-reconnect.
// The hints are in docs/exercises.md; the answer is in solution.go.
func (c *consumer) run(ctx context.Context) error {
	// Start with the shortest wait.

	// Loop over sessions, counting them from 0:

	// Run one session until it ends. Nothing of an old session is
	// used again: c.session dials anew every time.

	// Drained: the consumer was asked to finish.

	// Ctrl-C: stop, with ctx's error.

	// A session that got as far as consuming was healthy: start the
	// waits over from the shortest.

	// Wait (bo.wait), unless ctx ends first (sleep), and go round.

	return labkit.TODO("consumer.run", "run sessions in a loop with c.session, and back off between them")
}

// deliver processes one delivery of the session whose channel is ch, and
// acks it on that channel. It returns an error only when the ack failed:
// the channel is gone, and the session with it.
func (c *consumer) deliver(ctx context.Context, ch *amqp.Channel, d amqp.Delivery) error {
	// A delivery handed over after its channel closed is stale: the broker
	// has already put the message back and will deliver it on the next
	// channel, and its tag means nothing anywhere else. Drop it
	// unprocessed.

	// Process it (c.handle). A message the handler cannot process is
	// rejected without requeue: a real service dead-letters it (lab 04).

	// Ack on the channel the delivery came on, after processing: d.Ack
	// does exactly that. If that channel is gone, the ack fails and the
	// message comes again; return the error.

	return labkit.TODO("consumer.deliver", "drop a delivery whose channel is closed, process it with c.handle, then ack it with d.Ack")
}
