//go:build !exercise

package main

import (
	"context"
	"fmt"
	"time"
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
// run and commitBatch are the lab's exercise: exercise.go holds the
// template, and go test -tags exercise ./labs/14-batching checks it.
func (c *committer) run(ctx context.Context) error {
	for {
		// Wait for the first request of the next batch.
		var batch []request
		select {
		case r, ok := <-c.requests:
			if !ok {
				return nil // closed, and nothing is waiting
			}
			batch = append(batch, r)
		case <-ctx.Done():
			return ctx.Err()
		}

		// Collect more until the batch is full or maxWait has passed since
		// the first: a bounded wait, so a lone booking is not kept waiting
		// for company that never comes.
		closed := false
		deadline := time.NewTimer(c.maxWait)
	collect:
		for len(batch) < c.maxBatch {
			select {
			case r, ok := <-c.requests:
				if !ok {
					closed = true
					break collect
				}
				batch = append(batch, r)
			case <-deadline.C:
				break collect
			case <-ctx.Done():
				deadline.Stop()
				return ctx.Err()
			}
		}
		deadline.Stop()

		// Write the whole batch in one transaction: one commit, one fsync.
		booked, err := c.commitBatch(ctx, batch)
		if err == nil {
			c.sizes = append(c.sizes, len(batch))
		}

		// Answer each caller only now, after the commit: a booking
		// answered before it is durable could be lost after its caller
		// was told it is booked. A failed batch fails every caller in it.
		for i, r := range batch {
			if err != nil {
				r.reply <- result{err: err}
				continue
			}
			r.reply <- result{booked: booked[i]}
		}
		if closed {
			return nil
		}
	}
}

// commitBatch writes a batch of bookings in one transaction: it reserves
// each with c.reserve, in the order of batch, so that each booking sees
// the seats the ones before it took, then commits. booked[i] is the answer
// for batch[i]. On any error it rolls the transaction back, so that
// nothing of the batch is stored, and returns the error.
func (c *committer) commitBatch(ctx context.Context, batch []request) ([]bool, error) {
	// Begin one transaction for the whole batch; roll it back on every way
	// out but a commit.
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("beginning a batch of %d bookings: %w", len(batch), err)
	}
	defer tx.Rollback() // after a commit, this does nothing

	// Reserve each booking in arrival order: first come, first served,
	// inside the batch as well.
	booked := make([]bool, len(batch))
	for i, r := range batch {
		if booked[i], err = c.reserve(ctx, tx, r.b); err != nil {
			return nil, fmt.Errorf("in a batch of %d bookings: %w", len(batch), err)
		}
	}

	// Commit: one fsync makes every booking of the batch durable.
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("committing a batch of %d bookings: %w", len(batch), err)
	}
	return booked, nil
}
