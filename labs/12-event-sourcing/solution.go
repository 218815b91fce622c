//go:build !exercise

package main

import (
	"fmt"
	"time"
)

// stateAsOf folds the log into the read model as of at: it applies, in
// the trail's order, every record whose timestamp is at or before at, to a
// new projection, and skips the rest. The trail is the log merged by
// timestamp (mergeByTime).
//
// stateAsOf and projection.apply are the lab's exercise: exercise.go holds
// the template, and go test -tags exercise ./labs/12-event-sourcing checks
// it.
func stateAsOf(trail []record, at time.Time) (*projection, error) {
	// Start from nothing: a new projection.
	p := newProjection()
	// Apply each record that had happened by then (its timestamp is not
	// after at), in the trail's order; skip the others.
	for _, r := range trail {
		if r.Time.After(at) {
			continue
		}
		if _, err := p.apply(r); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// apply applies one record to the projection unless an earlier replay
// already did, and reports whether it did. An event the projection does
// not know is an error: skipping it would build a wrong state silently.
func (p *projection) apply(r record) (bool, error) {
	// Applied before? The projection keeps, per partition, the next
	// offset to apply; anything below it is done already.
	if r.Offset < p.next[r.Partition] {
		return false, nil
	}
	// Apply the event: created adds the user and counts it, deleted
	// removes it, renamed changes the name of a user that exists.
	switch e := r.Event.(type) {
	case UserCreated:
		p.users[e.ID] = e.Name
		p.created++
	case UserDeleted:
		delete(p.users, e.ID)
	case UserRenamed:
		if _, ok := p.users[e.ID]; ok {
			p.users[e.ID] = e.Name
		}
	default:
		return false, fmt.Errorf("partition %d offset %d: the projection does not know the event %s", r.Partition, r.Offset, r.Event.EventName())
	}
	// Remember that this offset of this partition is done.
	p.next[r.Partition] = r.Offset + 1
	return true, nil
}
