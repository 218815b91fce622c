//go:build exercise

package main

import (
	"context"

	"github.com/IBM/sarama"

	"example.com/myevents/labs/labkit"
)

// runSelfStored is a consumer that keeps its own position: it loads the
// checkpoint at path, consumes each partition p of topic from the stored
// next offset (the oldest one on a first start) up to offset until[p], and
// saves the checkpoint after every record. It returns the records it
// processed, its state, and the offset it started at per partition.
//
// Exercise: write it, following the steps below. Check it with
//
//	go test -tags exercise ./labs/10-offset-replay
//
// and see it in the program with go run -tags exercise ./labs/10-offset-replay.
// The hints are in docs/exercises.md; the answer is in solution.go.
func runSelfStored(ctx context.Context, client sarama.Client, topic, path string, until map[int32]int64) (result, error) {
	// Load the checkpoint (loadCheckpoint): the state and, per partition,
	// the next offset to read. A missing file is a first start.

	// For each partition p (0 up to partitions):

	// Start at the stored next offset, or at sarama.OffsetOldest when
	// none is stored (never the literal 0: retention may have removed
	// it). Note where each partition started.

	// Consume up to until[p] (consumeRange). Per record: apply it to
	// the checkpoint's state, set the partition's next offset to the
	// record's offset + 1, and save the checkpoint (saveCheckpoint)
	// before the next record. The position moves with the state, in
	// the same write: after a crash, either both include the record
	// or neither does.

	return result{}, labkit.TODO("runSelfStored", "resume each partition at the checkpoint's next offset and save state and position after every record")
}
