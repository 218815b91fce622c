package kafka

import (
	"context"
	"fmt"
	"sync"

	"github.com/IBM/sarama"
)

// listenReplay reads every partition from the oldest record until ctx ends.
func (l *Listener) listenReplay(ctx context.Context, w *worker) error {
	topic := l.opts.topic
	if err := l.client.RefreshMetadata(topic); err != nil {
		return fmt.Errorf("reading metadata of Kafka topic %s: %w", topic, err)
	}
	partitions, err := l.client.Partitions(topic)
	if err != nil {
		return fmt.Errorf("listing partitions of Kafka topic %s: %w", topic, err)
	}

	// Capture where the log ends now: CaughtUp waits for exactly that.
	targets := make(map[int32]int64, len(partitions))
	starts := make(map[int32]int64, len(partitions))
	for _, p := range partitions {
		if targets[p], err = l.stableOffset(p); err != nil {
			return err
		}
		if starts[p], err = l.client.GetOffset(topic, p, sarama.OffsetOldest); err != nil {
			return fmt.Errorf("reading the oldest offset of Kafka topic %s partition %d: %w", topic, p, err)
		}
	}
	l.caught.expect(targets)
	for p, start := range starts {
		l.caught.reached(p, start) // an empty partition is caught up already
	}

	// Start at the oldest record still stored, never at the literal 0,
	// which retention may have deleted.
	pcs := make(map[int32]sarama.PartitionConsumer, len(partitions))
	defer func() {
		// Ask them all to stop first: each waits for its broker's
		// fetch in flight (up to Consumer.MaxWaitTime), and one after
		// the other six partitions made a stop take two seconds.
		for _, pc := range pcs {
			pc.AsyncClose()
		}
		for p, pc := range pcs {
			if err := pc.Close(); err != nil {
				l.logger.Warn("kafka: closing a partition consumer", "topic", topic, "partition", p, "err", err)
			}
		}
	}()
	for _, p := range partitions {
		pc, err := l.cons.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			return fmt.Errorf("reading Kafka topic %s partition %d from the oldest offset: %w", topic, p, err)
		}
		pcs[p] = pc
	}
	l.logger.Info("kafka listener started", "mode", "replay", "topic", topic, "partitions", len(partitions))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		failOnce sync.Once
		failure  error
	)
	for p, pc := range pcs {
		wg.Go(func() {
			if err := l.replayPartition(ctx, w, p, pc, starts[p]); err != nil {
				failOnce.Do(func() { failure = err })
				cancel()
			}
		})
	}
	wg.Wait()
	return failure
}

// replayPartition processes one partition's records in order from
// offset start until ctx ends, decoding them ahead of the handler
// (decodeAhead).
func (l *Listener) replayPartition(ctx context.Context, w *worker, p int32, pc sarama.PartitionConsumer, start int64) error {
	ahead := decodeAhead(ctx, pc.Messages())
	defer ahead.stop()
	tail := l.newTailCheck(p, start)
	defer tail.stop()
	errs := pc.Errors()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tail.C():
			tail.check(ctx)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			l.logger.Warn("kafka partition consumer error", "topic", l.opts.topic, "partition", p, "err", err)
		case run, ok := <-ahead.runs:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("reading Kafka topic %s partition %d: the partition consumer stopped", l.opts.topic, p)
			}
			if !w.finishRun(ctx, run, func(msg *sarama.ConsumerMessage) {
				l.caught.reached(p, msg.Offset+1)
				tail.finished(msg)
			}) {
				return nil
			}
			ahead.done(run)
		}
	}
}
