// Package outbox decides what happens between "the write is stored" and
// "the broker has the event", for both capstone services.
//
// A service writes first and emits second; never the other way round, or a
// failed write would leave an event announcing something that does not
// exist. What happens when the broker refuses the event depends on the
// store:
//
//   - A SQL store keeps a transactional outbox: the row (a location, an
//     event, a booking) and an outbox row holding the event are committed in
//     one transaction. The [Publisher] then emits the event at once and marks
//     the outbox row sent. If the broker refuses, the write stands (the
//     client gets its 201), the row stays unsent, and a relay goroutine
//     retries it with exponential backoff until the broker takes it. Nothing
//     is lost while the broker is down, and a crash between the commit and
//     the emit is repaired at the next start. Delivery is at least once: an
//     emit that succeeded but was not marked sent is sent again, and
//     several instances sharing one database may each send a row that is
//     due, so consumers must be idempotent (ours are). Order is kept: once
//     an event had to be retried, later events of the same store wait
//     behind it (Publish leaves them to the relay, which sends the outbox
//     oldest first and stops at a retried event until it went through), so
//     a location.created that the broker refused is never overtaken by the
//     event.created of an event in it. An event the broker can never take
//     (it fails the contract's validation, perhaps written by an older
//     version, or is too large) is logged as an error and given up on
//     instead of holding up every later one for ever. Every resend carries
//     the same message ID (msgqueue.MessageID).
//   - A store without an outbox (the in-memory store) has no durable record
//     but the broker's log. There the event must be in the broker before the
//     client hears "created": the Publisher emits, and if the broker refuses
//     it undoes the write ([Message.Undo]) and returns [ErrNotPublished], which
//     the service answers with 503. If the broker only failed to confirm in
//     time ([msgqueue.UnconfirmedError]), the write stands until its late
//     answer, and Publish returns [ErrNotConfirmed]: a 503 that says the
//     outcome is not known yet.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"example.com/myevents/capstone/internal/backoff"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
)

// Message is an event that a committed write produced and that still has to
// reach the broker.
type Message struct {
	// ID is the outbox row's ID; 0 when the store keeps no outbox.
	ID int64
	// Event is what to emit.
	Event contracts.Event
	// Attempts counts the failed emits so far.
	Attempts int
	// Next is when the relay may send it (a new row: after Grace, when its
	// request is done emitting it; a failed one: after its backoff).
	Next time.Time
	// Broken, if set, says why the stored event could not be decoded; the
	// relay gives up on it.
	Broken error
	// Undo reverses the write. Only stores without an outbox set it; the
	// Publisher calls it when the broker refused the event.
	Undo func(context.Context) error
}

// Store is the outbox table of a SQL store.
type Store interface {
	// Pending returns up to limit unsent messages with an ID above after,
	// oldest (lowest ID) first, due or not.
	Pending(ctx context.Context, after int64, limit int) ([]Message, error)
	// MarkSent records that the broker took message id.
	MarkSent(ctx context.Context, id int64) error
	// Postpone records a failed attempt and when to try message id again.
	Postpone(ctx context.Context, id int64, attempts int, next time.Time) error
	// Unsent counts the messages not yet sent.
	Unsent(ctx context.Context) (int, error)
}

// ManyStore is a Store that can also mark many messages sent in one
// statement; the Publisher uses it when the store offers it.
type ManyStore interface {
	Store
	// MarkSentMany records that the broker took the messages ids.
	MarkSentMany(ctx context.Context, ids []int64) error
}

// Grace is how long the relay leaves a freshly written outbox row alone,
// because the request that wrote it is emitting it right now. A SQL store
// sets a new row's first due time to now + Grace. It must be longer than
// [Options.EmitTimeout], so that the relay never races a request's emit.
const Grace = 15 * time.Second

// ErrNotConfirmed is returned by Publish, for a store without an outbox,
// when the broker did not confirm the event in time but may still store it
// (msgqueue.UnconfirmedError). The write stands until the broker's answer
// comes, and is undone only if the broker certainly refused the event
// (settle). So a booking's seats stay held meanwhile, and cannot be sold
// twice when the event turns up in the log after all.
var ErrNotConfirmed = errors.New("the broker has not confirmed the event in time; it may still store it")

// ErrNotPublished is returned by Publish when the broker refused the event of
// a store without an outbox; the write has been undone.
var ErrNotPublished = errors.New("the broker did not take the event")

// Options tune the Publisher. The zero value means the defaults.
type Options struct {
	// EmitTimeout bounds one emit (default 5s).
	EmitTimeout time.Duration
	// Poll is how often the relay looks for due messages (default 1s).
	Poll time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed emit; it
	// doubles with each failure in a row (defaults 500ms and 5s).
	MinBackoff, MaxBackoff time.Duration
	// Batch is how many messages the relay reads at once (default 100).
	Batch int
	// Now is the relay's clock (default time.Now). Tests move it forward
	// to make messages due.
	Now func() time.Time
	// Logger receives the relay's warnings (default slog.Default()).
	Logger *slog.Logger
	// MarkEach marks every message Publish emitted sent on its own, before
	// Publish returns: a write per message, the one-at-a-time way kept for
	// comparison. By default the marks of messages emitted meanwhile are
	// written together, in one statement, just after (see marks.go).
	MarkEach bool
	// MarkLinger is how long noted marks wait before the Publisher writes
	// them itself, for a service that takes them into its own
	// transactions (TakeMarks; default 0: at once).
	MarkLinger time.Duration
	// StuckAfter is how long events may fail to reach the broker before
	// Health reports it (default 30s): long enough for a broker's restart,
	// short enough that an outage the emitter cannot see (a permission
	// revoked, a topic gone) shows on /healthz.
	StuckAfter time.Duration
}

func (o Options) withDefaults() Options {
	if o.StuckAfter <= 0 {
		o.StuckAfter = 30 * time.Second
	}
	if o.EmitTimeout <= 0 {
		o.EmitTimeout = 5 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		// Nothing tells the relay that the broker is back: it looks
		// again within seconds, for one emit that waits EmitTimeout.
		o.MaxBackoff = max(5*time.Second, o.MinBackoff)
	}
	if o.Batch <= 0 {
		o.Batch = 100
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// backoff is the wait after the n-th failure in a row (n >= 1): the
// capstone's one backoff, without jitter (a single relay per service).
func (o Options) backoff(n int) time.Duration {
	return backoff.Policy{First: o.MinBackoff, Longest: o.MaxBackoff}.Delay(n)
}

// Publisher hands the events of committed writes to the broker.
type Publisher struct {
	em    msgqueue.Emitter
	store Store // nil: no outbox
	opt   Options

	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	closing sync.Once

	// behind is set while the outbox holds an event that had to be
	// retried: Publish then leaves new events to the relay, which sends
	// them after it. epoch counts the reasons to stay behind, so the relay
	// only clears behind when nothing happened during its drain.
	mu     sync.Mutex
	behind bool
	epoch  int64
	// failingSince is when events stopped reaching the broker (zero: they
	// reach it), lastErr the last failure: Health.
	failingSince time.Time
	lastErr      error

	marks marks
}

// NewPublisher returns a Publisher that emits through em. With a non-nil
// store it also starts the relay goroutine, which runs until Close.
func NewPublisher(store Store, em msgqueue.Emitter, opt Options) *Publisher {
	p := &Publisher{
		em:    em,
		store: store,
		opt:   opt.withDefaults(),
		wake:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	if store == nil {
		close(p.done)
		return p
	}
	p.marks.start(p)
	go p.relay()
	return p
}

// Publish emits the event of a committed write. With an outbox it never
// fails: a refused event stays in the outbox for the relay. Without one, a
// refused event undoes the write and Publish returns an error wrapping
// ErrNotPublished.
func (p *Publisher) Publish(ctx context.Context, m Message) error {
	// The write is committed: finish the emit even if the client hangs up.
	ctx = context.WithoutCancel(ctx)
	if p.store != nil && p.stayBehind() {
		// An older event is waiting to be retried: this one goes after it.
		if err := p.store.Postpone(ctx, m.ID, m.Attempts, p.opt.Now()); err != nil {
			// The row keeps its first due time (now + Grace): sent later.
			p.opt.Logger.Warn("outbox: handing a message to the relay", "id", m.ID, "err", err)
		}
		p.Wake()
		return nil
	}
	err := p.emit(ctx, m.Event)
	if p.store == nil {
		if err == nil {
			return nil
		}
		var unconfirmed *msgqueue.UnconfirmedError
		if m.Undo != nil && errors.As(err, &unconfirmed) {
			go p.settle(m, unconfirmed.Final)
			return fmt.Errorf("%w: emitting %s: %w", ErrNotConfirmed, m.Event.EventName(), err)
		}
		err = fmt.Errorf("%w: emitting %s: %w", ErrNotPublished, m.Event.EventName(), err)
		if m.Undo != nil {
			if uerr := m.Undo(ctx); uerr != nil {
				return errors.Join(err, fmt.Errorf("undoing the write: %w", uerr))
			}
		}
		return err
	}
	if err == nil {
		p.markSent(ctx, m.ID)
		return nil
	}
	if neverTaken(err) {
		p.giveUp(ctx, m, err)
		return nil
	}
	p.fellBehind()
	p.failing(err)
	p.opt.Logger.Warn("outbox: emit failed, the relay will retry",
		"id", m.ID, "event", m.Event.EventName(), "err", err)
	next := p.opt.Now().Add(p.opt.backoff(m.Attempts + 1))
	if err := p.store.Postpone(ctx, m.ID, m.Attempts+1, next); err != nil {
		// The row keeps its first due time (now + Grace): still retried.
		p.opt.Logger.Warn("outbox: postponing a message", "id", m.ID, "err", err)
	}
	return nil
}

// settle waits for the broker's late answer about m's event (Final of a
// msgqueue.UnconfirmedError) and undoes m's write only if the broker
// certainly did not store it (msgqueue.ErrRefused). If it did, or if the
// answer leaves it unknown, the write stands: a booking's seats stay held,
// which may hold seats nobody bought until a restart replays the log, but
// never sells one twice.
func (p *Publisher) settle(m Message, final <-chan error) {
	name := m.Event.EventName()
	err := <-final
	if err != nil && !errors.Is(err, msgqueue.ErrRefused) {
		p.opt.Logger.Warn("outbox: the broker's late answer leaves it unknown whether it stored the event; its write stands until a restart rebuilds from the log",
			"event", name, "err", err)
		return
	}
	if err != nil {
		if uerr := m.Undo(context.Background()); uerr != nil {
			p.opt.Logger.Error("outbox: the broker refused an unconfirmed event after all, and undoing its write failed",
				"event", name, "err", err, "undo_err", uerr)
			return
		}
		p.opt.Logger.Warn("outbox: the broker refused an unconfirmed event after all; its write is undone", "event", name, "err", err)
		return
	}
	p.opt.Logger.Info("outbox: the broker confirmed an event late; its write stands", "event", name)
}

// stayBehind reports whether new events must wait behind a retried one,
// and if so counts one more reason for the relay not to clear it yet.
func (p *Publisher) stayBehind() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.behind {
		p.epoch++
	}
	return p.behind
}

// Health reports an outbox whose events have not reached the broker for
// longer than Options.StuckAfter, with the last failure; the events are
// kept and retried meanwhile. It is nil for a Publisher without an outbox.
func (p *Publisher) Health(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failingSince.IsZero() {
		return nil
	}
	if d := p.opt.Now().Sub(p.failingSince); d > p.opt.StuckAfter {
		return fmt.Errorf("events have not reached the broker for %v (the outbox keeps them and retries): %w", d.Round(time.Second), p.lastErr)
	}
	return nil
}

// failing notes that an event did not reach the broker (err), or that the
// outbox is sent (nil).
func (p *Publisher) failing(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		p.failingSince, p.lastErr = time.Time{}, nil
		return
	}
	if p.failingSince.IsZero() {
		p.failingSince = p.opt.Now()
	}
	p.lastErr = err
}

// fellBehind records that an event has to be retried.
func (p *Publisher) fellBehind() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.behind = true
	p.epoch++
}

// neverTaken reports an emit error that no retry can fix: the event fails
// the contract's validation or does not fit a message.
func neverTaken(err error) bool {
	return errors.Is(err, contracts.ErrInvalid) || errors.Is(err, msgqueue.ErrTooLarge)
}

// giveUp takes a message the broker can never take out of the outbox,
// loudly: it stays in the table, marked sent, for an operator to look at.
func (p *Publisher) giveUp(ctx context.Context, m Message, cause error) {
	p.opt.Logger.Error("outbox: giving up on an event the broker can never take", "id", m.ID, "err", cause)
	if err := p.store.MarkSent(ctx, m.ID); err != nil {
		p.opt.Logger.Warn("outbox: marking a message given up on", "id", m.ID, "err", err)
	}
}

// emit emits ev with the emit timeout.
func (p *Publisher) emit(ctx context.Context, ev contracts.Event) error {
	ctx, cancel := context.WithTimeout(ctx, p.opt.EmitTimeout)
	defer cancel()
	return p.em.Emit(ctx, ev)
}

// Wake asks the relay to look for due messages now instead of at its next
// poll.
func (p *Publisher) Wake() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Close stops the relay and waits for it. Unsent messages stay in the outbox
// for the next start. The emitter and the store are the caller's to close.
func (p *Publisher) Close() error {
	p.closing.Do(func() { close(p.stop) })
	<-p.done
	p.marks.wait()
	return nil
}

// relay sends due outbox messages until Close. After a failure it waits with
// exponential backoff before trying again; a success resets the wait.
func (p *Publisher) relay() {
	defer close(p.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-p.stop:
			cancel()
		case <-ctx.Done():
		}
	}()

	failures := 0
	wait := time.Duration(0) // look at once: rows a crash left behind
	for {
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-p.wake:
			timer.Stop()
		case <-timer.C:
		}
		p.mu.Lock()
		epoch := p.epoch
		p.mu.Unlock()
		caughtUp, err := p.drain(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.fellBehind()
			p.failing(err)
			failures++
			wait = p.opt.backoff(failures)
			// A message the broker refused is tried again when it is due
			// (its own backoff); anything else, when the relay looks again.
			if re, ok := errors.AsType[*retryError](err); ok {
				p.opt.Logger.Warn("outbox relay: sending failed", "attempts", re.attempts, "retry_in", re.in, "err", err)
			} else {
				p.opt.Logger.Warn("outbox relay: sending failed", "failures", failures, "retry_in", wait, "err", err)
			}
			continue
		}
		if caughtUp {
			// Everything due was sent: what failed went through (even if
			// new requests, queued behind, keep the relay behind).
			p.failing(nil)
		}
		p.mu.Lock()
		switch {
		case !caughtUp:
			p.behind = true
		case p.epoch == epoch:
			p.behind = false
		}
		p.mu.Unlock()
		failures = 0
		wait = p.opt.Poll
	}
}

// retryError is a message the broker refused, postponed: its attempts so
// far and when it is due again.
type retryError struct {
	err      error
	attempts int
	in       time.Duration
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// drain sends the due messages of the outbox, oldest first. A retried
// message that is not due yet stops it, so nothing newer overtakes it
// (caughtUp is false then); a new message that is not due yet is being
// emitted by its request right now and is passed. drain stops at the first
// failure, because the broker is most likely down and the rest would fail
// too.
func (p *Publisher) drain(ctx context.Context) (caughtUp bool, err error) {
	// The messages sent are marked in one statement per page, and before
	// any return.
	var sent []int64
	defer func() {
		if merr := p.markNow(ctx, sent); merr != nil {
			caughtUp, err = false, errors.Join(err, merr)
		}
	}()
	var after int64
	for {
		now := p.opt.Now()
		msgs, err := p.store.Pending(ctx, after, p.opt.Batch)
		if err != nil {
			return false, fmt.Errorf("reading the outbox: %w", err)
		}
		for _, m := range msgs {
			after = m.ID
			switch {
			case m.Next.After(now) && m.Attempts > 0:
				return false, nil
			case m.Next.After(now):
				continue
			case m.Broken != nil:
				p.giveUp(ctx, m, m.Broken)
				continue
			}
			if err := p.emit(ctx, m.Event); err != nil {
				if neverTaken(err) {
					p.giveUp(ctx, m, err)
					continue
				}
				in := p.opt.backoff(m.Attempts + 1)
				if perr := p.store.Postpone(ctx, m.ID, m.Attempts+1, now.Add(in)); perr != nil {
					err = errors.Join(err, fmt.Errorf("postponing message %d: %w", m.ID, perr))
				}
				return false, &retryError{err: fmt.Errorf("emitting outbox message %d (%s): %w", m.ID, m.Event.EventName(), err), attempts: m.Attempts + 1, in: in}
			}
			sent = append(sent, m.ID)
		}
		err = p.markNow(ctx, sent)
		sent = sent[:0]
		if err != nil {
			return false, err
		}
		if len(msgs) < p.opt.Batch {
			return true, nil
		}
	}
}
