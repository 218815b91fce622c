package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
// no fault of its own. While it reads, it looks every heldEvery (watchHeld)
// and Health says so once it has seen a partition held at one offset for
// heldLimit.

const (
	// heldLimit is how long a partition may stay held at one offset
	// before Health reports it: transactions normally end in seconds.
	heldLimit = 30 * time.Second
	// heldEvery is how often the listener looks.
	heldEvery = 5 * time.Second
)

// heldWatch is what the listener knows of partitions held back.
type heldWatch struct {
	limit, every time.Duration // heldLimit and heldEvery; a test sets less

	mu    sync.Mutex
	owned []int32          // group mode: the session's partitions
	at    map[int32]heldAt // partition: where and since when it is held
	found error            // what the last look found
}

// heldAt is where a partition's last stable offset stood below its
// high-water mark, and when the listener first saw it there.
type heldAt struct {
	offset int64
	since  time.Time
}

// err returns what the last look found: nil, or the partitions held back
// for longer than the limit.
func (w *heldWatch) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.found
}

// own sets the partitions a group session reads (nil between sessions).
func (w *heldWatch) own(partitions []int32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.owned = slices.Clone(partitions)
}

// watchHeld looks at the listener's partitions every w.every until ctx
// ends, then forgets what it saw. It asks through the dead-letter client,
// whose connections do not wait behind the consumer's fetches, and does
// not wait for a look still asking a cluster that does not answer when
// ctx ends: Close would wait for it.
func (l *Listener) watchHeld(ctx context.Context) {
	w := &l.held
	defer func() {
		w.mu.Lock()
		w.at, w.found = nil, nil
		w.mu.Unlock()
	}()
	tick := time.NewTicker(w.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		looked := make(chan error, 1)
		go func() { looked <- l.checkHeld(time.Now()) }()
		select {
		case <-ctx.Done():
			return
		case err := <-looked:
			w.mu.Lock()
			w.found = err
			w.mu.Unlock()
		}
	}
}

// checkHeld compares the last stable offset of each partition the
// listener reads (all of the topic's in a replay, the session's in a
// group) with its high-water mark at now. A partition it cannot ask about
// is left out: the emitter's Health reports a cluster that does not
// answer.
func (l *Listener) checkHeld(now time.Time) error {
	topic, c, w := l.opts.topic, l.dlqClient, &l.held
	var partitions []int32
	if l.group != "" {
		w.mu.Lock()
		partitions = slices.Clone(w.owned)
		w.mu.Unlock()
	} else {
		var err error
		if partitions, err = c.Partitions(topic); err != nil {
			return nil
		}
	}
	next := map[int32]heldAt{}
	var errs []error
	for _, p := range partitions {
		stable, err := l.stableOffsetVia(c, p)
		if err != nil {
			continue
		}
		end, err := c.GetOffset(topic, p, sarama.OffsetNewest) // read-uncommitted: the high-water mark
		if err != nil || stable >= end {
			continue
		}
		w.mu.Lock()
		h, seen := w.at[p]
		w.mu.Unlock()
		if !seen || h.offset != stable {
			h = heldAt{offset: stable, since: now}
		}
		next[p] = h
		if held := now.Sub(h.since); held >= w.limit {
			errs = append(errs, fmt.Errorf("partition %d of topic %s is held at offset %d by a transaction this listener has seen open for %v: the %d offsets from it on wait until its producer commits or aborts it, or the broker aborts it at its timeout",
				p, topic, stable, held.Round(time.Second), end-stable))
		}
	}
	w.mu.Lock()
	w.at = next
	w.mu.Unlock()
	return errors.Join(errs...)
}
