//go:build exercise

package main

import (
	"time"

	"example.com/myevents/labs/labkit"
)

// stateAsOf folds the log into the read model as of at: it applies, in
// the trail's order, every record whose timestamp is at or before at, to a
// new projection, and skips the rest. The trail is the log merged by
// timestamp (mergeByTime).
//
// Exercise: write stateAsOf and projection.apply below, following the
// steps in each. Check them with
//
//	go test -tags exercise ./labs/12-event-sourcing
//
// and see them in the program with go run -tags exercise ./labs/12-event-sourcing.
// The hints are in docs/exercises.md; the answer is in solution.go.
func stateAsOf(trail []record, at time.Time) (*projection, error) {
	// Start from nothing: a new projection.

	// Apply each record that had happened by then (its timestamp is not
	// after at), in the trail's order; skip the others.

	return nil, labkit.TODO("stateAsOf", "apply every record of the trail at or before at to a new projection")
}

// apply applies one record to the projection unless an earlier replay
// already did, and reports whether it did. An event the projection does
// not know is an error: skipping it would build a wrong state silently.
func (p *projection) apply(r record) (bool, error) {
	// Applied before? The projection keeps, per partition, the next
	// offset to apply; anything below it is done already.

	// Apply the event: created adds the user and counts it, deleted
	// removes it, renamed changes the name of a user that exists.

	// Remember that this offset of this partition is done.

	return false, labkit.TODO("projection.apply", "skip offsets below p.next, apply the event to p.users, advance p.next")
}
