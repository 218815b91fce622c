package kafka

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/IBM/sarama"
)

// Transactions, as another service (or a Java or Python client) may write
// them to the topic, leave offsets that hold no record to read:
//
//   - each transaction ends in a marker, a control record that takes an
//     offset but is never handed to a consumer;
//   - the records of an aborted transaction never happened, and a
//     listener reads with sarama.ReadCommitted so that it never sees them.
//
// A partition whose last offsets are such would never be "caught up" by
// the offset of the last record handed over. The listener therefore
// waits for the partition's last stable offset (stableOffset), and a
// partition that has been quiet for a moment while short of it is checked
// with a fetch of its own (tailIsEmpty): if nothing from there to the
// target is a record the consumer would hand over, the partition is
// caught up.

// Bounds of the wait before a quiet partition short of its target is
// checked: it doubles from tailFirstCheck to tailLastCheck while the
// partition stays short.
const (
	tailFirstCheck = 100 * time.Millisecond
	tailLastCheck  = 5 * time.Second
	tailFetchBytes = 64 << 10
)

// stableOffset returns the offset of partition p that a read-committed
// consumer reads up to now: one past the last record of the last decided
// transaction (the last stable offset), which is the high-water mark when
// no transaction is open.
func (l *Listener) stableOffset(p int32) (int64, error) { return l.stableOffsetVia(l.client, p) }

// stableOffsetVia is stableOffset asked through client c.
func (l *Listener) stableOffsetVia(c sarama.Client, p int32) (int64, error) {
	topic := l.opts.topic
	broker, err := c.Leader(topic, p)
	if err != nil {
		return 0, fmt.Errorf("finding the leader of Kafka topic %s partition %d: %w", topic, p, err)
	}
	req := sarama.NewOffsetRequest(c.Config().Version)
	req.IsolationLevel = sarama.ReadCommitted
	req.AddBlock(topic, p, sarama.OffsetNewest, 1)
	resp, err := broker.GetAvailableOffsets(req)
	if err != nil {
		return 0, fmt.Errorf("reading the last stable offset of Kafka topic %s partition %d: %w", topic, p, err)
	}
	block := resp.GetBlock(topic, p)
	switch {
	case block == nil:
		return 0, fmt.Errorf("reading the last stable offset of Kafka topic %s partition %d: %w", topic, p, sarama.ErrIncompleteResponse)
	case !errors.Is(block.Err, sarama.ErrNoError):
		return 0, fmt.Errorf("reading the last stable offset of Kafka topic %s partition %d: %w", topic, p, block.Err)
	case len(block.Offsets) != 1:
		return 0, fmt.Errorf("reading the last stable offset of Kafka topic %s partition %d: %d offsets in the answer", topic, p, len(block.Offsets))
	}
	return block.Offsets[0], nil
}

// tailIsEmpty reports whether partition p holds, from offset next up to
// target, no record that a read-committed consumer hands over: only
// transaction markers and records of aborted transactions. It reads that
// stretch with fetches of its own and decides each batch as sarama's
// partition consumer does (parseRecords); when in doubt (an old message
// format, a batch cut short, an empty answer) it reports false.
func (l *Listener) tailIsEmpty(p int32, next, target int64) (bool, error) {
	topic := l.opts.topic
	broker, err := l.client.Leader(topic, p)
	if err != nil {
		return false, fmt.Errorf("finding the leader of Kafka topic %s partition %d: %w", topic, p, err)
	}
	for next < target {
		// Version 4: read-committed isolation and the aborted
		// transactions in the answer, without fetch sessions. A
		// small answer will do: one record to hand over settles it,
		// and markers are small (the broker sends a larger first
		// batch whole all the same).
		req := newFetchRequest(l.client.Config().Version)
		req.MaxWaitTime, req.MaxBytes = 0, tailFetchBytes
		req.AddBlock(topic, p, next, tailFetchBytes, -1)
		resp, err := broker.Fetch(req)
		if err != nil {
			return false, fmt.Errorf("reading Kafka topic %s partition %d from offset %d: %w", topic, p, next, err)
		}
		block := resp.GetBlock(topic, p)
		if block == nil {
			return false, nil
		}
		if !errors.Is(block.Err, sarama.ErrNoError) {
			return false, fmt.Errorf("reading Kafka topic %s partition %d from offset %d: %w", topic, p, next, block.Err)
		}
		var found, moved bool
		next, found, moved = scanTail(block, next, target)
		if found || !moved {
			return false, nil
		}
	}
	return true, nil
}

// scanTail decides the batches of one fetch answer from offset next: it
// returns the offset after the last batch it could decide, whether a
// record to hand over lies below target, and whether it moved at all.
func scanTail(block *sarama.FetchResponseBlock, next, target int64) (after int64, found, moved bool) {
	aborts := newAborts(block)
	for _, rs := range block.RecordsSet {
		b := rs.RecordBatch
		if b == nil || b.PartialTrailingRecord {
			return next, false, moved // not a batch this check decides
		}
		delivers := aborts.delivers(b)
		if b.LastOffset() < next {
			continue
		}
		if b.FirstOffset >= target {
			return target, false, true
		}
		if delivers {
			for _, r := range b.Records {
				if off := b.FirstOffset + r.OffsetDelta; off >= next && off < target {
					return off, true, true
				}
			}
		}
		next, moved = b.LastOffset()+1, true
	}
	return next, false, moved
}

// aborts decides, batch by batch in log order, which batches of one fetch
// answer hand their records over to a read-committed consumer, as
// sarama's partition consumer does (parseResponse): the answer lists the
// aborted transactions it touches, each with its producer and first
// offset; a producer's batches are aborted from that offset until its
// abort marker.
type aborts struct {
	pending []*sarama.AbortedTransaction // by first offset, not reached yet
	by      map[int64]bool               // producers inside an aborted transaction
}

func newAborts(block *sarama.FetchResponseBlock) *aborts {
	pending := slices.Clone(block.AbortedTransactions)
	slices.SortFunc(pending, func(a, b *sarama.AbortedTransaction) int { return cmp.Compare(a.FirstOffset, b.FirstOffset) })
	return &aborts{pending: pending, by: map[int64]bool{}}
}

// delivers reports whether batch b's records are handed over: it is no
// transaction marker, and not of an aborted transaction. Call it for each
// batch of the answer, in order.
func (a *aborts) delivers(b *sarama.RecordBatch) bool {
	for len(a.pending) > 0 && a.pending[0].FirstOffset <= b.LastOffset() {
		a.by[a.pending[0].ProducerID] = true
		a.pending = a.pending[1:]
	}
	switch {
	case b.Control:
		if len(b.Records) > 0 && isAbortMarker(b.Records[0].Key) {
			delete(a.by, b.ProducerID)
		}
		return false
	case b.IsTransactional && a.by[b.ProducerID]:
		return false
	}
	return true
}

// isAbortMarker reports whether a control record's key says "abort": a
// version, then the type, 0 for abort, both 16-bit big-endian.
func isAbortMarker(key []byte) bool {
	return len(key) >= 4 && binary.BigEndian.Uint16(key[2:4]) == 0
}

// tailCheck watches one partition's loop for the moment to call
// tailIsEmpty: the partition is quiet and still short of its target.
type tailCheck struct {
	l     *Listener
	p     int32
	next  int64 // one past the last record finished
	timer *time.Timer
	delay time.Duration
}

func (l *Listener) newTailCheck(p int32, start int64) *tailCheck {
	return &tailCheck{l: l, p: p, next: start, timer: time.NewTimer(tailFirstCheck), delay: tailFirstCheck}
}

// finished notes a finished record: the partition is not quiet.
func (t *tailCheck) finished(msg *sarama.ConsumerMessage) {
	t.next = msg.Offset + 1
	t.delay = tailFirstCheck
	t.timer.Reset(t.delay)
}

// C fires when the partition has been quiet for the current delay.
func (t *tailCheck) C() <-chan time.Time { return t.timer.C }

func (t *tailCheck) stop() { t.timer.Stop() }

// check runs when C fired: it returns the partition's target and true
// when the records left below it are none to hand over, and the
// partition counts as caught up. Otherwise it waits twice as long before
// the next check, or no more once the partition is caught up.
func (t *tailCheck) check(ctx context.Context) (int64, bool) {
	target, pending := t.l.caught.target(t.p)
	if !pending || ctx.Err() != nil {
		return 0, false
	}
	if t.next < target {
		empty, err := t.l.tailIsEmpty(t.p, t.next, target)
		if err != nil {
			t.l.logger.Warn("kafka: checking the end of a partition failed", "topic", t.l.opts.topic, "partition", t.p, "err", err)
		}
		if empty {
			t.l.logger.Info("kafka: the partition ends in transaction markers or aborted records; read to its end",
				"topic", t.l.opts.topic, "partition", t.p, "from", t.next, "to", target)
			t.l.caught.reached(t.p, target)
			return target, true
		}
	}
	t.delay = min(2*t.delay, tailLastCheck)
	t.timer.Reset(t.delay)
	return 0, false
}
