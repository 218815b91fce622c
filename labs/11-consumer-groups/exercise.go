//go:build exercise

package main

import (
	"github.com/IBM/sarama"

	"example.com/myevents/labs/labkit"
)

// consumeClaim hands the messages of one claimed partition to handle, in
// offset order, and marks each one only after handle processed it, so
// that the group commits only what was processed. It returns nil when the
// partition is revoked (a rebalance or Close) or the session ends, and
// handle's error, wrapped, when a message cannot be processed: that ends
// the session, as a crash would, and the message is read again by
// whoever owns the partition next.
//
// Exercise: write it, following the steps below. Check it with
//
//	go test -tags exercise ./labs/11-consumer-groups
//
// and see it in the program with go run -tags exercise ./labs/11-consumer-groups.
// The hints are in docs/exercises.md; the answer is in solution.go.
func consumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim, handle func(*sarama.ConsumerMessage) error) error {
	// Loop, and in each round wait for one of two things:

	// Take the next message. A closed Messages() means the partition
	// was revoked: rebalance or Close.

	// Process it. If that fails, stop here, unmarked.

	// Mark it only after processing. Marked offsets are committed
	// in the background every AutoCommit.Interval and when the
	// session ends (rebalance or Close). A crash before that commit
	// means the next owner reads the message again (at-least-once);
	// it is never skipped.

	// The session ended.

	return labkit.TODO("consumeClaim", "process each message of claim.Messages() with handle, then mark it with s.MarkMessage")
}
