package msgqueuetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
)

// cancelEndsListen: cancelling the context ends Listen; Close is final.
func (s *suite) cancelEndsListen(t *testing.T) {
	_, l, em := s.open(t, contracts.EventBookedName)

	// Prove Listen is running, then cancel it.
	first := booked("cancel-b01", "cancel-key", 1)
	emitAll(t, em, s.tr.Timeout, first)
	rec := newRecorder(nil)
	run := listen(t, l, rec.handle)
	rec.waitAll(t, s.tr.Timeout, map[string]bool{first.ID: true})
	if err := run.stop(s.tr.Timeout); err != nil {
		t.Errorf("Listen returned %v after its context was cancelled, want nil", err)
	}

	// Close twice; both nil.
	for i := range 2 {
		if err := l.Close(); err != nil {
			t.Errorf("listener Close #%d: %v", i+1, err)
		}
		if err := em.Close(); err != nil {
			t.Errorf("emitter Close #%d: %v", i+1, err)
		}
	}

	// After Close, Emit and Listen fail with ErrClosed.
	ctx, cancel := context.WithTimeout(t.Context(), s.tr.Timeout)
	defer cancel()
	if err := em.Emit(ctx, booked("cancel-b02", "cancel-key", 2)); !errors.Is(err, msgqueue.ErrClosed) {
		t.Errorf("Emit after Close returned %v, want an error wrapping msgqueue.ErrClosed", err)
	}
	if err := l.Listen(ctx, rec.handle); !errors.Is(err, msgqueue.ErrClosed) {
		t.Errorf("Listen after Close returned %v, want an error wrapping msgqueue.ErrClosed", err)
	}
}

// closeWaitsForHandler: Close waits for the handler that is running.
func (s *suite) closeWaitsForHandler(t *testing.T) {
	_, l, em := s.open(t, contracts.EventBookedName)
	emitAll(t, em, s.tr.Timeout, booked("close-b01", "close-key", 1))

	// The handler blocks until released and records that it finished.
	entered := make(chan struct{})
	release := make(chan struct{})
	var finished atomic.Bool
	var once sync.Once
	h := func(context.Context, contracts.Event) error {
		once.Do(func() {
			close(entered)
			<-release
			finished.Store(true)
		})
		return nil
	}
	run := listen(t, l, h)
	select {
	case <-entered:
	case <-time.After(s.tr.Timeout):
		t.Fatal("the handler was not called within the timeout")
	}

	// Close while the handler runs; it must not return before the handler.
	// The handler is let go only a while after Close started: a Close that
	// does not wait returns in that while, before finished is set. (A
	// correct Close passes whatever the timing.)
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	var releasing sync.Once
	letGo := func() { releasing.Do(func() { close(release) }) }
	defer letGo() // never leave the handler blocked, whatever failed
	time.AfterFunc(200*time.Millisecond, letGo)
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(s.tr.Timeout):
		t.Fatal("Close did not return after the handler finished")
	}
	if !finished.Load() {
		t.Error("Close returned before the running handler finished")
	}
	if err := run.stop(s.tr.Timeout); err != nil {
		t.Errorf("Listen returned %v after Close, want nil", err)
	}
}

// listenAgainAfterReturn: after a Listen returned (its context ended), the
// same listener listens again and receives what was emitted meanwhile.
func (s *suite) listenAgainAfterReturn(t *testing.T) {
	_, l, em := s.open(t, contracts.EventBookedName)

	for i := 1; i <= 2; i++ {
		ev := booked(fmt.Sprintf("again-b%02d", i), "again-key", i)
		emitAll(t, em, s.tr.Timeout, ev)
		rec := newRecorder(nil)
		run := listen(t, l, rec.handle)
		rec.waitAll(t, s.tr.Timeout, map[string]bool{ev.ID: true})
		if err := run.stop(s.tr.Timeout); err != nil {
			t.Fatalf("Listen #%d returned %v after its context was cancelled, want nil", i, err)
		}
	}
}

// refusesUnknownName: Listen refuses, at once, a name the listener was not
// built for (one it could decode, and one no contract has), and the
// listener still works afterwards.
func (s *suite) refusesUnknownName(t *testing.T) {
	_, l, em := s.open(t, contracts.EventBookedName)

	rec := newRecorder(nil)
	for _, name := range []string{contracts.EventCreatedName, "event.cancelled"} {
		ctx, cancel := context.WithTimeout(t.Context(), s.tr.Timeout)
		err := l.Listen(ctx, rec.handle, name)
		cancel()
		if err == nil {
			t.Errorf("Listen(%s) on a listener built for %s returned nil, want an error", name, contracts.EventBookedName)
		}
	}
	ev := booked("unknown-b01", "unknown-key", 1)
	emitAll(t, em, s.tr.Timeout, ev)
	listen(t, l, rec.handle)
	rec.waitAll(t, s.tr.Timeout, map[string]bool{ev.ID: true})
}

// emitRefusesOversized: Emit refuses an event whose message would be over
// msgqueue.MaxMessageSize (BulkyLocation), with an error wrapping
// msgqueue.ErrTooLarge, and puts nothing on the wire: the handler only
// ever sees the event emitted after it.
func (s *suite) emitRefusesOversized(t *testing.T) {
	_, l, em := s.open(t, contracts.LocationCreatedName)
	ctx, cancel := context.WithTimeout(t.Context(), s.tr.Timeout)
	defer cancel()
	if err := em.Emit(ctx, BulkyLocation()); !errors.Is(err, msgqueue.ErrTooLarge) {
		t.Errorf("Emit of a location over %d bytes = %v, want an error wrapping msgqueue.ErrTooLarge", msgqueue.MaxMessageSize, err)
	}
	small := sample(contracts.LocationCreatedName, "oversized-after")
	emitAll(t, em, s.tr.Timeout, small)
	rec := newRecorder(nil)
	listen(t, l, rec.handle)
	rec.waitAll(t, s.tr.Timeout, map[string]bool{EventID(small): true})
	if calls, _ := rec.totals(); calls != 1 {
		t.Errorf("the handler was called %d times, want once: the oversized location reached it", calls)
	}
}
