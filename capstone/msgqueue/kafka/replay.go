package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/capstone/internal/backoff"
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
	var pcsMu sync.Mutex // reopen replaces a partition's consumer
	defer func() {
		pcsMu.Lock()
		defer pcsMu.Unlock()
		// Ask them all to stop first: each waits for its broker's
		// fetch in flight (up to Consumer.MaxWaitTime), and one after
		// the other six partitions made a stop take two seconds.
		for _, pc := range pcs {
			pc.AsyncClose()
		}
		for p, pc := range pcs {
			if err := pc.Close(); err != nil && !isOutOfRange(err) {
				l.logger.Warn("kafka: closing a partition consumer", "topic", topic, "partition", p, "err", err)
			}
		}
	}()
	// open starts partition p's consumer at offset, in place of one that
	// stopped (replayPartition's reopen) or of none (a new partition).
	open := func(p int32, offset int64) (sarama.PartitionConsumer, error) {
		pcsMu.Lock()
		defer pcsMu.Unlock()
		if old, ok := pcs[p]; ok {
			_ = old.Close() // it stopped already: this releases it (its error was seen)
			delete(pcs, p)
		}
		pc, err := l.cons.ConsumePartition(topic, p, offset)
		if err != nil {
			return nil, fmt.Errorf("reading Kafka topic %s partition %d from offset %d: %w", topic, p, offset, err)
		}
		pcs[p] = pc
		return pc, nil
	}
	l.logger.Info("kafka listener started", "mode", "replay", "topic", topic, "partitions", len(partitions))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		failOnce sync.Once
		failure  error
	)
	known := make(map[int32]bool, len(partitions)) // the partitions being read
	// run reads partition p from start; pc, when not nil, is its
	// consumer opened at start already.
	run := func(p int32, start int64, pc sarama.PartitionConsumer) {
		known[p] = true
		wg.Go(func() {
			if err := l.replayPartition(ctx, w, p, start, pc, open); err != nil {
				failOnce.Do(func() { failure = err })
				cancel()
			}
		})
	}
	for _, p := range partitions {
		run(p, starts[p], nil)
	}
	// Partitions added to the topic while the replay runs: read them too,
	// from their oldest record, once the client's metadata (refreshed
	// every Metadata.RefreshFrequency) shows them. Without this, their
	// events reached a running instance only after a restart.
	every := l.client.Config().Metadata.RefreshFrequency
	if every <= 0 { // sarama's "no background refresh": look as often as listeners refresh
		every = metadataRefresh
	}
	wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			now, err := l.client.Partitions(topic)
			if err != nil {
				continue // the next tick tries again; Health reports a lost cluster
			}
			for _, p := range now {
				if known[p] {
					continue
				}
				start, err := l.client.GetOffset(topic, p, sarama.OffsetOldest)
				if err != nil {
					continue
				}
				pc, err := open(p, start)
				if err != nil {
					l.logger.Warn("kafka: reading a new partition failed; retrying", "topic", topic, "partition", p, "err", err)
					continue
				}
				l.logger.Info("kafka: the topic has a new partition; replaying it too", "topic", topic, "partition", p)
				run(p, start, pc)
			}
		}
	})
	wg.Wait()
	return failure
}

// replayPartition processes one partition's records in order from
// offset start until ctx ends, decoding them ahead of the handler. What
// the partition held when the replay started it reads with fetches of its
// own (fetchAhead, fetch.go), the rest with sarama's partition consumer
// pc, which it opens with reopen when pc is nil (decodeAhead). Records
// deleted under it (retention, DeleteRecords, the topic deleted and
// created again) stop sarama's consumer with ErrOffsetOutOfRange: then it
// goes on from the oldest record still stored, with reopen, saying what it
// skipped, rather than stop the service.
func (l *Listener) replayPartition(ctx context.Context, w *worker, p int32, start int64, pc sarama.PartitionConsumer,
	reopen func(p int32, offset int64) (sarama.PartitionConsumer, error)) error {
	tail := l.newTailCheck(p, start)
	defer tail.stop()
	finished := func(msg *sarama.ConsumerMessage) {
		l.caught.reached(p, msg.Offset+1)
		tail.finished(msg)
	}
	if pc == nil {
		from := start
		if target, pending := l.caught.target(p); pending && start < target {
			ahead, end := l.fetchAhead(ctx, p, start, target)
			for run := range ahead.runs {
				if !w.finishRun(ctx, run, finished) {
					ahead.stop()
					return nil
				}
				ahead.done(run)
			}
			if ctx.Err() != nil {
				return nil
			}
			switch from = end.next; {
			case end.err == nil:
				l.caught.reached(p, target) // markers and aborted records up to it included
			case isOutOfRange(end.err):
				// Deleted under the fetches: startConsumer goes on from
				// the oldest record still stored.
			default:
				l.logger.Warn("kafka: reading the partition's backlog directly stopped; its consumer goes on from there",
					"topic", l.opts.topic, "partition", p, "offset", end.next, "err", end.err)
			}
			tail.next = max(tail.next, from)
		}
		if pc = l.startConsumer(ctx, p, from, tail, reopen); pc == nil {
			return nil // ctx ended
		}
	}
	ahead := decodeAhead(ctx, pc.Messages())
	defer func() { ahead.stop() }()
	errs := pc.Errors()
	var lastErr error
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
			lastErr = err
			l.logger.Warn("kafka partition consumer error", "topic", l.opts.topic, "partition", p, "err", err)
		case run, ok := <-ahead.runs:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				if errs != nil {
					for err := range errs { // the reason comes before the channel closes
						lastErr = err
					}
				}
				if !isOutOfRange(lastErr) {
					return fmt.Errorf("reading Kafka topic %s partition %d: the partition consumer stopped: %v", l.opts.topic, p, lastErr)
				}
				ahead.stop()
				if pc = l.startConsumer(ctx, p, tail.next, tail, reopen); pc == nil {
					return nil // ctx ended
				}
				ahead, errs, lastErr = decodeAhead(ctx, pc.Messages()), pc.Errors(), nil
				continue
			}
			if !w.finishRun(ctx, run, finished) {
				return nil
			}
			ahead.done(run)
		}
	}
}

// startConsumer opens sarama's consumer of partition p at offset from
// with reopen, and returns nil only once ctx ended. What the broker has
// deleted from there on (ErrOffsetOutOfRange) it skips, saying so, and
// opens it at the oldest record still stored: what was deleted cannot be
// read, so the partition counts as read below it. Any other failure (a
// broker away, a leader moving) it tries again after a growing backoff,
// and after a few tries says in Stalled, and so in Health, that the
// partition waits; a replay that stopped there stopped its service.
func (l *Listener) startConsumer(ctx context.Context, p int32, from int64, tail *tailCheck,
	reopen func(p int32, offset int64) (sarama.PartitionConsumer, error)) sarama.PartitionConsumer {
	topic := l.opts.topic
	defer l.stalls.clear(p)
	for try := 1; ; try++ {
		pc, err := reopen(p, from)
		if err == nil {
			return pc
		}
		if isOutOfRange(err) {
			oldest, oerr := l.client.GetOffset(topic, p, sarama.OffsetOldest)
			if oerr == nil && oldest != from {
				l.logger.Warn("kafka: records were deleted under the replay; going on from the oldest one still stored",
					"topic", topic, "partition", p, "from", from, "oldest", oldest)
				from = oldest
				tail.next = max(tail.next, oldest)
				l.caught.reached(p, oldest)
				continue
			}
			if oerr != nil {
				err = fmt.Errorf("%w, and reading its oldest offset failed: %w", err, oerr)
			}
		}
		if try >= startTriesBeforeStalled {
			l.stalls.set(p, fmt.Errorf("partition %d of topic %s waits at offset %d: its consumer cannot start (retrying): %w", p, topic, from, err))
		}
		l.logger.Warn("kafka: starting the partition's consumer failed; retrying",
			"topic", topic, "partition", p, "offset", from, "try", try, "err", err)
		if !backoff.Sleep(ctx, l.opts.retry.Delay(try)) {
			return nil
		}
	}
}

// startTriesBeforeStalled is how many failed starts of a partition's
// consumer in a row make it count as stalled.
const startTriesBeforeStalled = 3

// isOutOfRange reports whether err is sarama's ErrOffsetOutOfRange: the
// offset a consumer asked for is no longer (or not yet) stored.
func isOutOfRange(err error) bool { return errors.Is(err, sarama.ErrOffsetOutOfRange) }
