package outbox

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Marking sent, in groups. Publish emits an event and its outbox row must
// then be marked sent, or the relay sends it again once its grace period is
// over. A mark is a write, and a write per message costs a commit (an fsync
// on SQLite) per message. So Publish only notes the row's ID and returns;
// one goroutine marks every ID noted since its last write in one statement
// (MarkSentMany when the store has it). Under load, the IDs of many
// requests go in one write; the client is not kept waiting for it at all.
//
// Nothing is lost: a mark that fails, or that a crash prevents, leaves the
// row unsent, and the relay sends it again after its grace period, a
// duplicate that consumers ignore (the same as before, when a failed
// MarkSent only logged). The goroutine waits for no timer: it writes as
// soon as it is woken, and what is noted while it writes goes into the
// next write. Close writes the marks still noted.
//
// A service that commits its own writes in groups can do better still:
// TakeMarks hands it the marks noted so far, and it writes them in its next
// transaction, which commits anyway. The goroutine then leaves the marks
// alone for Options.MarkLinger, so that under load they all ride along and
// cost no commit of their own.

// marks is the Publisher's pending marks and the goroutine that writes
// them.
type marks struct {
	mu   sync.Mutex
	ids  []int64
	wake chan struct{}
	done chan struct{}
}

// start starts the goroutine that writes p's marks, until p stops.
func (m *marks) start(p *Publisher) {
	m.wake = make(chan struct{}, 1)
	m.done = make(chan struct{})
	if p.opt.MarkEach {
		close(m.done)
		return
	}
	go func() {
		defer close(m.done)
		for {
			select {
			case <-m.wake:
			case <-p.stop:
				m.flush(p)
				return
			}
			if p.opt.MarkLinger > 0 {
				t := time.NewTimer(p.opt.MarkLinger)
				select {
				case <-t.C:
				case <-p.stop:
					t.Stop()
				}
			}
			m.flush(p)
		}
	}()
}

// wait waits for the goroutine to write the last marks and stop.
func (m *marks) wait() {
	if m.done != nil {
		<-m.done
	}
}

// flush writes the marks noted so far.
func (m *marks) flush(p *Publisher) {
	m.mu.Lock()
	ids := m.ids
	m.ids = nil
	m.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	// The events are in the broker: finish the write even while stopping.
	ctx, cancel := context.WithTimeout(context.Background(), p.opt.EmitTimeout)
	defer cancel()
	if err := p.markNow(ctx, ids); err != nil {
		// The relay sends them again after their grace period: duplicates,
		// which consumers tolerate.
		p.opt.Logger.Warn("outbox: marking messages sent", "messages", len(ids), "err", err)
	}
}

// markSent records that message id was emitted: at once with MarkEach,
// else noted for the next group write.
func (p *Publisher) markSent(ctx context.Context, id int64) {
	if p.opt.MarkEach {
		if err := p.store.MarkSent(ctx, id); err != nil {
			// The relay will send it again: a duplicate, which consumers
			// tolerate.
			p.opt.Logger.Warn("outbox: marking a message sent", "id", id, "err", err)
		}
		return
	}
	p.marks.mu.Lock()
	p.marks.ids = append(p.marks.ids, id)
	p.marks.mu.Unlock()
	select {
	case p.marks.wake <- struct{}{}:
	default:
	}
}

// TakeMarks returns the IDs of the messages emitted since the last write of
// marks and forgets them: the caller writes them (MarkSentMany's statement,
// in a transaction of its own). If that transaction fails, it hands them
// back with ReturnMarks.
func (p *Publisher) TakeMarks() []int64 {
	p.marks.mu.Lock()
	defer p.marks.mu.Unlock()
	ids := p.marks.ids
	p.marks.ids = nil
	return ids
}

// ReturnMarks notes ids again, for the next write: the transaction that
// took them failed.
func (p *Publisher) ReturnMarks(ids []int64) {
	if len(ids) == 0 || p.store == nil {
		return
	}
	p.marks.mu.Lock()
	p.marks.ids = append(p.marks.ids, ids...)
	p.marks.mu.Unlock()
	select {
	case p.marks.wake <- struct{}{}:
	default:
	}
}

// markNow marks ids sent, in one statement if the store can.
func (p *Publisher) markNow(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	if ms, ok := p.store.(ManyStore); ok {
		return ms.MarkSentMany(ctx, ids)
	}
	for _, id := range ids {
		if err := p.store.MarkSent(ctx, id); err != nil {
			return fmt.Errorf("marking outbox message %d sent: %w", id, err)
		}
	}
	return nil
}
