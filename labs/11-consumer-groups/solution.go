//go:build !exercise

package main

import (
	"fmt"

	"github.com/IBM/sarama"
)

// consumeClaim hands the messages of one claimed partition to handle, in
// offset order, and marks each one only after handle processed it, so
// that the group commits only what was processed. It returns nil when the
// partition is revoked (a rebalance or Close) or the session ends, and
// handle's error, wrapped, when a message cannot be processed: that ends
// the session, as a crash would, and the message is read again by
// whoever owns the partition next.
//
// This is the lab's exercise: exercise.go holds the template, and
// go test -tags exercise ./labs/11-consumer-groups checks it.
func consumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim, handle func(*sarama.ConsumerMessage) error) error {
	// Loop, and in each round wait for one of two things:
	for {
		select {
		// Take the next message. A closed Messages() means the partition
		// was revoked: rebalance or Close.
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			// Process it. If that fails, stop here, unmarked.
			if err := handle(msg); err != nil {
				return fmt.Errorf("processing offset %d: %w", msg.Offset, err)
			}
			// Mark it only after processing. Marked offsets are committed
			// in the background every AutoCommit.Interval and when the
			// session ends (rebalance or Close). A crash before that commit
			// means the next owner reads the message again (at-least-once);
			// it is never skipped.
			s.MarkMessage(msg, "")
		// The session ended.
		case <-s.Context().Done():
			return nil
		}
	}
}
