//go:build exercise

package main

import (
	"context"

	"example.com/myevents/labs/labkit"
)

// run is the group committer's loop. It waits for the first request of a
// batch, then collects more until it holds c.maxBatch or c.maxWait has
// passed since that first one; writes the batch with commitBatch; and only
// then answers each caller of the batch, in the order they arrived: booked
// or sold out, or, if the batch failed, its error. Then it starts the next
// batch. It records the size of every committed batch in c.sizes.
//
// It returns nil once c.requests is closed and every request it received
// is answered, and ctx's error when ctx ends (callers stop waiting on
// their own context).
//
// Exercise: write run and commitBatch, following the steps in each. Check
// them with
//
//	go test -tags exercise ./labs/14-batching
//
// and see them in the program with go run -tags exercise ./labs/14-batching.
// The hints are in docs/exercises.md; the answer is in solution.go.
func (c *committer) run(ctx context.Context) error {
	// Wait for the first request of the next batch (a closed c.requests
	// means there are no more: return nil).

	// Collect more until the batch is full or maxWait has passed since
	// the first: a bounded wait, so a lone booking is not kept waiting
	// for company that never comes. (If c.requests closes meanwhile,
	// finish this batch, then return nil.)

	// Write the whole batch in one transaction: one commit, one fsync.
	// Record the size of a committed batch in c.sizes.

	// Answer each caller only now, after the commit: a booking answered
	// before it is durable could be lost after its caller was told it is
	// booked. A failed batch fails every caller in it.

	return labkit.TODO("committer.run", "collect a batch of requests, write it with commitBatch, then answer each caller")
}

// commitBatch writes a batch of bookings in one transaction: it reserves
// each with c.reserve, in the order of batch, so that each booking sees
// the seats the ones before it took, then commits. booked[i] is the answer
// for batch[i]. On any error it rolls the transaction back, so that
// nothing of the batch is stored, and returns the error.
func (c *committer) commitBatch(ctx context.Context, batch []request) ([]bool, error) {
	// Begin one transaction for the whole batch; roll it back on every way
	// out but a commit.

	// Reserve each booking in arrival order: first come, first served,
	// inside the batch as well.

	// Commit: one fsync makes every booking of the batch durable.

	return nil, labkit.TODO("committer.commitBatch", "begin one transaction, reserve each booking in order with c.reserve, commit")
}
