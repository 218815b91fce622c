//go:build !exercise

package main

import (
	"context"

	"github.com/IBM/sarama"
)

// runSelfStored is a consumer that keeps its own position: it loads the
// checkpoint at path, consumes each partition p of topic from the stored
// next offset (the oldest one on a first start) up to offset until[p], and
// saves the checkpoint after every record. It returns the records it
// processed, its state, and the offset it started at per partition.
//
// This is the lab's exercise: exercise.go holds the template, and
// go test -tags exercise ./labs/10-offset-replay checks it.
func runSelfStored(ctx context.Context, client sarama.Client, topic, path string, until map[int32]int64) (result, error) {
	// Load the checkpoint (loadCheckpoint): the state and, per partition,
	// the next offset to read. A missing file is a first start.
	cp, err := loadCheckpoint(path)
	if err != nil {
		return result{}, err
	}
	res := result{state: cp.Seats, startedAt: map[int32]int64{}}
	// For each partition p (0 up to partitions):
	for p := range int32(partitions) {
		// Start at the stored next offset, or at sarama.OffsetOldest when
		// none is stored (never the literal 0: retention may have removed
		// it). Note where each partition started.
		from, stored := cp.Next[p]
		if !stored {
			from = sarama.OffsetOldest
		}
		res.startedAt[p] = from

		// Consume up to until[p] (consumeRange). Per record: apply it to
		// the checkpoint's state, set the partition's next offset to the
		// record's offset + 1, and save the checkpoint (saveCheckpoint)
		// before the next record. The position moves with the state, in
		// the same write: after a crash, either both include the record
		// or neither does.
		err := consumeRange(ctx, client, topic, p, from, until[p], func(m *sarama.ConsumerMessage) error {
			r, err := apply(cp.Seats, m)
			if err != nil {
				return err
			}
			cp.Next[p] = m.Offset + 1
			if err := saveCheckpoint(path, cp); err != nil {
				return err
			}
			res.records = append(res.records, r)
			return nil
		})
		if err != nil {
			return result{}, err
		}
	}
	return res, nil
}
