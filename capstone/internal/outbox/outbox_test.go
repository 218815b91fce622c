package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"example.com/myevents/capstone/internal/outbox"
	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labtest"
)

// fakeStore is an outbox.Store in memory.
type fakeStore struct {
	mu       sync.Mutex
	rows     map[int64]*row
	dueCalls int
}

type row struct {
	msg  outbox.Message
	next time.Time
	sent bool
}

func newFakeStore() *fakeStore { return &fakeStore{rows: map[int64]*row{}} }

func (s *fakeStore) add(id int64, ev contracts.Event, next time.Time) outbox.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := outbox.Message{ID: id, Event: ev}
	s.rows[id] = &row{msg: m, next: next}
	return m
}

func (s *fakeStore) Pending(_ context.Context, after int64, limit int) ([]outbox.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dueCalls++
	var out []outbox.Message
	for id, r := range s.rows {
		if !r.sent && id > after {
			m := r.msg
			m.Next = r.next
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b outbox.Message) int { return int(a.ID - b.ID) })
	return out[:min(limit, len(out))], nil
}

func (s *fakeStore) MarkSent(_ context.Context, id int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows[id].sent = true
	return nil
}

func (s *fakeStore) Postpone(_ context.Context, id int64, attempts int, next time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows[id].msg.Attempts = attempts
	s.rows[id].next = next
	return nil
}

func (s *fakeStore) Unsent(context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.rows {
		if !r.sent {
			n++
		}
	}
	return n, nil
}

func (s *fakeStore) attempts(id int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rows[id].msg.Attempts
}

// awaitEmpty waits until nothing is left unsent.
func (s *fakeStore) awaitEmpty(t *testing.T) {
	t.Helper()
	brokertest.Eventually(t, 5*time.Second, func() error {
		if n, _ := s.Unsent(context.Background()); n != 0 {
			return fmt.Errorf("%d unsent", n)
		}
		return nil
	})
}

func booked(id string) *contracts.EventBooked {
	return &contracts.EventBooked{ID: id, EventID: "e", UserID: "u", Seats: 1}
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func fast() outbox.Options {
	return outbox.Options{Poll: 5 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Logger: quiet()}
}

func TestWithoutOutboxARefusedEventUndoesTheWrite(t *testing.T) {
	em := &servicetest.Emitter{}
	p := outbox.NewPublisher(nil, em, fast())
	defer p.Close()

	undone := 0
	msg := outbox.Message{Event: booked("b1"), Undo: func(context.Context) error { undone++; return nil }}
	if err := p.Publish(context.Background(), msg); err != nil || undone != 0 || len(em.Emitted()) != 1 {
		t.Fatalf("accepted: err=%v undone=%d emitted=%d", err, undone, len(em.Emitted()))
	}

	em.Fail(true)
	err := p.Publish(context.Background(), msg)
	if !errors.Is(err, outbox.ErrNotPublished) || !errors.Is(err, servicetest.ErrRefused) || undone != 1 {
		t.Fatalf("refused: err=%v undone=%d; want ErrNotPublished wrapping the cause, undone once", err, undone)
	}

	// An undo that fails is reported too.
	msg.Undo = func(context.Context) error { return errors.New("undo broke") }
	err = p.Publish(context.Background(), msg)
	if !errors.Is(err, outbox.ErrNotPublished) || err == nil || !strings.Contains(err.Error(), "undoing the write: undo broke") {
		t.Fatalf("err = %v", err)
	}
}

func TestWithOutboxARefusedEventIsRetriedUntilSent(t *testing.T) {
	store := newFakeStore()
	em := &servicetest.Emitter{}
	em.Fail(true)
	p := outbox.NewPublisher(store, em, fast())
	defer p.Close()

	msg := store.add(1, booked("b1"), time.Now().Add(outbox.Grace))
	if err := p.Publish(context.Background(), msg); err != nil {
		t.Fatalf("Publish with an outbox must not fail: %v", err)
	}
	if store.attempts(1) != 1 {
		t.Fatalf("attempts = %d, want 1 after the failed inline emit", store.attempts(1))
	}
	// The relay keeps trying while the broker refuses, with backoff.
	brokertest.Eventually(t, 5*time.Second, func() error {
		if n := store.attempts(1); n < 3 {
			return fmt.Errorf("%d attempts so far", n)
		}
		return nil
	})
	em.Fail(false)
	store.awaitEmpty(t)
	if got := em.Emitted(); len(got) != 1 || got[0].(*contracts.EventBooked).ID != "b1" {
		t.Errorf("emitted %v, want b1 once", got)
	}
}

func TestRelaySendsWhatACrashLeftBehind(t *testing.T) {
	store := newFakeStore()
	em := &servicetest.Emitter{}
	// Three rows committed, never emitted: the process died. Their grace
	// period is over at the next start.
	for i := range int64(3) {
		store.add(i+1, booked(fmt.Sprint("b", i+1)), time.Now().Add(-time.Second))
	}
	p := outbox.NewPublisher(store, em, fast())
	defer p.Close()
	brokertest.Eventually(t, 5*time.Second, func() error {
		if n := len(em.Emitted()); n != 3 {
			return fmt.Errorf("%d of 3 emitted", n)
		}
		return nil
	})
	var ids []string
	for _, ev := range em.Emitted() {
		ids = append(ids, ev.(*contracts.EventBooked).ID)
	}
	if !slices.Equal(ids, []string{"b1", "b2", "b3"}) {
		t.Errorf("emitted %v, want oldest first", ids)
	}
}

func TestRelayLeavesFreshRowsToTheRequest(t *testing.T) {
	store := newFakeStore()
	em := &servicetest.Emitter{}
	p := outbox.NewPublisher(store, em, fast())
	store.add(1, booked("b1"), time.Now().Add(outbox.Grace))
	// Let the relay look several times, then stop it: it must not have
	// sent a row whose request is still emitting it.
	brokertest.Eventually(t, 5*time.Second, func() error {
		store.mu.Lock()
		defer store.mu.Unlock()
		if store.dueCalls < 5 {
			return fmt.Errorf("the relay looked %d times", store.dueCalls)
		}
		return nil
	})
	p.Close()
	if n := len(em.Emitted()); n != 0 {
		t.Errorf("relay emitted %d fresh rows", n)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// retryLog keeps the retry_in of each "sending failed" warning.
type retryLog struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (l *retryLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *retryLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *retryLog) WithGroup(string) slog.Handler            { return l }
func (l *retryLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "outbox relay: sending failed" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "retry_in" {
			l.mu.Lock()
			l.waits = append(l.waits, a.Value.Duration())
			l.mu.Unlock()
		}
		return true
	})
	return nil
}

// TestRelayLogsTheRealRetry: the relay's warning says when the message is
// tried again, which doubles with each attempt (after the request's own
// failed emit: 10, then 20 ms here). It said 5 ms every time: it logged
// the relay's own backoff, which starts over whenever a pass finds the
// message not due yet.
func TestRelayLogsTheRealRetry(t *testing.T) {
	store := newFakeStore()
	em := &servicetest.Emitter{}
	em.Fail(true)
	log := &retryLog{}
	opt := fast()
	opt.Logger = slog.New(log)
	p := outbox.NewPublisher(store, em, opt)
	defer p.Close()
	msg := store.add(1, booked("b1"), time.Now().Add(outbox.Grace))
	if err := p.Publish(context.Background(), msg); err != nil { // attempt 1 fails
		t.Fatal(err)
	}
	brokertest.Eventually(t, 5*time.Second, func() error {
		log.mu.Lock()
		defer log.mu.Unlock()
		if len(log.waits) < 3 {
			return fmt.Errorf("%d warnings so far", len(log.waits))
		}
		return nil
	})
	log.mu.Lock()
	defer log.mu.Unlock()
	want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond}
	if !slices.Equal(log.waits[:3], want) {
		t.Errorf("retry_in of the first warnings %v, want %v", log.waits[:3], want)
	}
}

// lateEmitter answers every Emit with a msgqueue.UnconfirmedError whose
// Final the test settles.
type lateEmitter struct {
	servicetest.Emitter
	final chan error
}

func (e *lateEmitter) Emit(context.Context, contracts.Event) error {
	return &msgqueue.UnconfirmedError{Err: context.DeadlineExceeded, Final: e.final}
}

// TestWithoutOutboxAnUnconfirmedEventWaitsForTheBroker: an emit whose
// confirm did not come in time leaves the write standing (ErrNotConfirmed,
// not ErrNotPublished) until the broker's late answer: undone only if the
// broker certainly refused it (msgqueue.ErrRefused), kept otherwise.
func TestWithoutOutboxAnUnconfirmedEventWaitsForTheBroker(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer error
		undone int32
	}{
		{"stored after all", nil, 0},
		{"refused after all", fmt.Errorf("%w: the record is too large", msgqueue.ErrRefused), 1},
		// The client gave up on an answer the broker may have lost after
		// storing the event: undoing would free seats a replay counts.
		{"still unknown", errors.New("out of retries: broker unreachable"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			em := &lateEmitter{final: make(chan error, 1)}
			var logged labtest.Buffer
			opt := fast()
			opt.Logger = slog.New(slog.NewTextHandler(&logged, nil))
			p := outbox.NewPublisher(nil, em, opt)
			defer p.Close()
			var undone atomic.Int32
			msg := outbox.Message{Event: booked("b1"), Undo: func(context.Context) error {
				undone.Add(1)
				return nil
			}}
			err := p.Publish(context.Background(), msg)
			if !errors.Is(err, outbox.ErrNotConfirmed) || errors.Is(err, outbox.ErrNotPublished) || undone.Load() != 0 {
				t.Fatalf("unconfirmed: err=%v undone=%d; want ErrNotConfirmed and the write standing", err, undone.Load())
			}
			em.final <- tc.answer
			// Settling ends with a line about the broker's late answer,
			// after any undo.
			brokertest.Eventually(t, 5*time.Second, func() error {
				if !strings.Contains(logged.String(), "outbox: the broker") {
					return fmt.Errorf("not settled yet; logged %q", logged.String())
				}
				return nil
			})
			if got := undone.Load(); got != tc.undone {
				t.Errorf("undone %d times, want %d", got, tc.undone)
			}
		})
	}
}

// TestHealthReportsAStuckOutbox: events that keep failing to reach the
// broker for longer than StuckAfter make Health fail with the last error
// (a service's /healthz said 200 while a revoked permission refused every
// event); it passes again once they went through. Without an outbox there
// is nothing to report.
func TestHealthReportsAStuckOutbox(t *testing.T) {
	store := newFakeStore()
	em := &servicetest.Emitter{}
	em.Fail(true)
	opt := fast()
	opt.StuckAfter = 50 * time.Millisecond
	p := outbox.NewPublisher(store, em, opt)
	defer p.Close()
	ctx := context.Background()
	if err := p.Health(ctx); err != nil {
		t.Fatalf("Health of a new publisher: %v", err)
	}
	if err := p.Publish(ctx, store.add(1, booked("b1"), time.Now().Add(outbox.Grace))); err != nil {
		t.Fatal(err)
	}
	brokertest.Eventually(t, 5*time.Second, func() error {
		if err := p.Health(ctx); err == nil || !errors.Is(err, servicetest.ErrRefused) {
			return fmt.Errorf("health while every emit is refused: %v, want the refusal", err)
		}
		return nil
	})
	em.Fail(false)
	store.awaitEmpty(t)
	brokertest.Eventually(t, 5*time.Second, func() error { return p.Health(ctx) })

	bare := outbox.NewPublisher(nil, em, opt)
	defer bare.Close()
	if err := bare.Health(ctx); err != nil {
		t.Errorf("Health without an outbox: %v", err)
	}
}
