package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/IBM/sarama"

	"example.com/myevents/capstone/internal/backoff"
)

// maxConsumeFailures is how many times in a row joining the consumer group
// may fail before Listen gives up. Sarama already retries each join.
const maxConsumeFailures = 5

// listenGroup consumes as a group member, session after session (a
// rebalance ends a session), until ctx ends.
func (l *Listener) listenGroup(ctx context.Context, w *worker) error {
	l.logger.Info("kafka listener started", "mode", "group", "group", l.group, "topic", l.opts.topic)
	gh := &groupHandler{w: w}
	failures := 0
	for {
		err := l.cg.Consume(ctx, []string{l.opts.topic}, gh)
		switch {
		case ctx.Err() != nil, errors.Is(err, sarama.ErrClosedConsumerGroup):
			return nil
		case err == nil:
			failures = 0 // the session ended for a rebalance: join again
			continue
		}
		failures++
		if failures >= maxConsumeFailures {
			return fmt.Errorf("consuming Kafka topic %s as group %s: %w", l.opts.topic, l.group, err)
		}
		l.logger.Warn("kafka consumer group session failed; joining again", "group", l.group, "err", err)
		if !backoff.Sleep(ctx, l.opts.retry.Delay(failures)) {
			return nil
		}
	}
}

// groupHandler is the sarama side of a group session.
type groupHandler struct{ w *worker }

// Setup runs when the session has its partitions, before any record.
func (g *groupHandler) Setup(sess sarama.ConsumerGroupSession) error {
	l := g.w.l
	l.held.own(sess.Claims()[l.opts.topic])
	targets := make(map[int32]int64)
	for _, p := range sess.Claims()[l.opts.topic] {
		newest, err := l.stableOffset(p)
		if err != nil {
			l.logger.Warn("kafka: reading a last stable offset failed; not waiting for that partition to catch up",
				"topic", l.opts.topic, "partition", p, "err", err)
			continue
		}
		targets[p] = newest
	}
	l.caught.expect(targets)
	return nil
}

// Cleanup runs after every ConsumeClaim returned: commit what they marked
// now, rather than at the next tick.
func (g *groupHandler) Cleanup(sess sarama.ConsumerGroupSession) error {
	g.w.l.held.own(nil)
	sess.Commit()
	return nil
}

// ConsumeClaim processes one partition in log order, a record or a window
// at a time (decoded ahead of the handler: decodeAhead), until the
// session ends.
func (g *groupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	l := g.w.l
	p := claim.Partition()
	start := claim.InitialOffset()
	if start < 0 { // "oldest" or "newest": ask which offset that is now
		if off, err := l.client.GetOffset(claim.Topic(), p, start); err == nil {
			start = off
		}
	}
	l.caught.reached(p, start)

	ctx := sess.Context()
	ahead := decodeAhead(ctx, claim.Messages())
	defer ahead.stop()
	tail := l.newTailCheck(p, start)
	defer tail.stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tail.C():
			if target, ok := tail.check(ctx); ok {
				// Nothing to hand over below target: commit past
				// the markers too.
				sess.MarkOffset(claim.Topic(), p, target, "")
			}
		case run, ok := <-ahead.runs:
			if !ok {
				// The session is ending: leave the records to the
				// partition's next owner.
				return nil
			}
			ok = g.w.finishRun(ctx, run, func(msg *sarama.ConsumerMessage) {
				// Only now may the offset move past this record (and
				// those before it).
				sess.MarkMessage(msg, "")
				l.caught.reached(p, msg.Offset+1)
				tail.finished(msg)
			})
			if !ok {
				return nil
			}
			ahead.done(run)
		}
	}
}
