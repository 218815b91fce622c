package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
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
}

// heldAt is where a partition's last stable offset stood below its
// high-water mark (end) at the last look, and when the listener first saw
// it there.
type heldAt struct {
	offset, end int64
	since       time.Time
}

// own sets the partitions a group session reads (nil between sessions).
func (w *heldWatch) own(partitions []int32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.owned = slices.Clone(partitions)
}

// heldErr names the partitions the listener reads that it has seen held
// at one offset for longer than the limit, or returns nil. It asks the
// cluster nothing: the last look (watchHeld) is what it knows, and in a
// group only the partitions of the current session count.
func (l *Listener) heldErr() error {
	w := &l.held
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	var errs []error
	for _, p := range slices.Sorted(maps.Keys(w.at)) {
		h := w.at[p]
		held := now.Sub(h.since)
		if held < w.limit || (l.group != "" && !slices.Contains(w.owned, p)) {
			continue
		}
		errs = append(errs, fmt.Errorf("partition %d of topic %s is held at offset %d by a transaction this listener has seen open for %v: the %d offsets from it on wait until its producer commits or aborts it, or the broker aborts it at its timeout",
			p, l.opts.topic, h.offset, held.Round(time.Second), h.end-h.offset))
	}
	return errors.Join(errs...)
}

// watchHeld looks at the listener's partitions every w.every until ctx
// ends, then forgets what it saw. It asks through the dead-letter client,
// whose connections do not wait behind the consumer's fetches, and does
// not wait for a look still asking a cluster that does not answer when
// ctx ends: Close would wait for it. It alone writes what a look found.
func (l *Listener) watchHeld(ctx context.Context) {
	w := &l.held
	defer func() {
		w.mu.Lock()
		w.at = nil
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
		w.mu.Lock()
		prev := maps.Clone(w.at)
		w.mu.Unlock()
		looked := make(chan map[int32]heldAt, 1)
		go func() { looked <- l.lookHeld(time.Now(), prev) }()
		select {
		case <-ctx.Done():
			return
		case next := <-looked:
			w.mu.Lock()
			w.at = next
			w.mu.Unlock()
		}
	}
}

// lookHeld compares the last stable offset of each partition the
// listener reads (all of the topic's in a replay, the session's in a
// group) with its high-water mark at now, and returns the partitions held
// below it, each since when prev says (or now, if it was not held there
// before). A partition it cannot ask about keeps what prev says of it:
// one failed request does not start the clock again, and the emitter's
// Health reports a cluster that does not answer.
func (l *Listener) lookHeld(now time.Time, prev map[int32]heldAt) map[int32]heldAt {
	topic, c, w := l.opts.topic, l.dlqClient, &l.held
	var partitions []int32
	if l.group != "" {
		w.mu.Lock()
		partitions = slices.Clone(w.owned)
		w.mu.Unlock()
	} else {
		// The partitions the replay reads: its own client's metadata,
		// which it refreshes every metadataRefresh (the dead-letter
		// client's is sarama's 10 minutes), asked nothing.
		var err error
		if partitions, err = l.client.Partitions(topic); err != nil {
			return prev
		}
	}
	next := map[int32]heldAt{}
	refreshed := false
	for _, p := range partitions {
		stable, err := l.stableOffsetVia(c, p)
		if err != nil && !refreshed {
			// A leader that moved answers "not the leader" until the
			// client asks the cluster where it is now: once a look.
			refreshed = true
			if c.RefreshMetadata(topic) == nil {
				stable, err = l.stableOffsetVia(c, p)
			}
		}
		var end int64
		if err == nil {
			end, err = c.GetOffset(topic, p, sarama.OffsetNewest) // read-uncommitted: the high-water mark
		}
		h, seen := prev[p]
		switch {
		case err != nil:
			if seen {
				next[p] = h
			}
		case stable >= end:
		case seen && h.offset == stable:
			h.end = end
			next[p] = h
		default:
			next[p] = heldAt{offset: stable, end: end, since: now}
		}
	}
	return next
}
