package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// A transaction that another producer began and has not ended holds back
// every record after its first from a read-committed consumer: the
// partition's last stable offset stays where the transaction began while
// its high-water mark moves on. The broker ends such a transaction only
// at its timeout (up to transaction.max.timeout.ms, 15 minutes by default
// on Apache Kafka). Until then the listener cannot move past it, through
// no fault of its own, and Health says so once it has seen the partition
// held at one offset for heldLimit.

// heldLimit is how long Health lets a partition stay held at one offset
// by an open transaction before it reports the listener as held back:
// transactions normally end within seconds.
const heldLimit = 30 * time.Second

// heldWatch is what Health remembers of the partitions it found held
// back, between its calls.
type heldWatch struct {
	limit time.Duration // heldLimit; a test sets less

	mu       sync.Mutex
	at       map[int32]heldAt // partition: where and since when it is held
	checking bool             // a check is running (one at a time)
	last     error            // what the last check found
}

// heldAt is where a partition's last stable offset stood below its
// high-water mark, and since when Health has seen it there.
type heldAt struct {
	offset int64
	since  time.Time
}

// heldBack reports the partitions held back by an open transaction for
// longer than the limit. A check asks the leader of every partition for
// two offsets; it runs on a goroutine of its own, one at a time, and
// heldBack returns when ctx ends if it has not answered by then, with
// what the last check found.
func (l *Listener) heldBack(ctx context.Context) error {
	w := &l.held
	w.mu.Lock()
	if w.checking {
		last := w.last
		w.mu.Unlock()
		return last
	}
	w.checking = true
	w.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		err := l.checkHeld(time.Now())
		w.mu.Lock()
		w.checking, w.last = false, err
		w.mu.Unlock()
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.last
	}
}

// checkHeld compares each partition's last stable offset with its
// high-water mark at now. A partition it cannot ask about is left out:
// the emitter's Health reports a cluster that does not answer.
func (l *Listener) checkHeld(now time.Time) error {
	topic := l.opts.topic
	partitions, err := l.client.Partitions(topic)
	if err != nil {
		return nil
	}
	w := &l.held
	var errs []error
	for _, p := range partitions {
		stable, err := l.stableOffset(p)
		if err != nil {
			continue
		}
		end, err := l.client.GetOffset(topic, p, sarama.OffsetNewest) // read-uncommitted: the high-water mark
		if err != nil {
			continue
		}
		w.mu.Lock()
		if w.at == nil {
			w.at = map[int32]heldAt{}
		}
		h, seen := w.at[p]
		switch {
		case stable >= end:
			delete(w.at, p)
		case !seen || h.offset != stable:
			w.at[p] = heldAt{offset: stable, since: now}
		case now.Sub(h.since) >= w.limit:
			errs = append(errs, fmt.Errorf("partition %d of topic %s is held at offset %d by a transaction open for over %v: the %d records after it wait until its producer commits or aborts it, or the broker aborts it at its timeout",
				p, topic, stable, now.Sub(h.since).Round(time.Second), end-stable))
		}
		w.mu.Unlock()
	}
	return errors.Join(errs...)
}
