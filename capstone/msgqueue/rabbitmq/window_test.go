package rabbitmq_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/rabbitmq"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// windowLog records what ListenBatch handed over: the windows to the
// batch handler, the events to the one-event handler.
type windowLog struct {
	mu      sync.Mutex
	windows [][]string // booking IDs per batch-handler call that returned nil
	singles []string   // booking IDs per handler call that returned nil
}

// listen runs l.ListenBatch until the test ends. batch answers a window
// (nil applies it), single one event.
func (w *windowLog) listen(t *testing.T, l *rabbitmq.Listener, batch func(ids []string) error, single func(id string) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	h := func(_ context.Context, ev contracts.Event) error {
		id := ev.(*contracts.EventBooked).ID
		err := single(id)
		if err == nil {
			w.mu.Lock()
			w.singles = append(w.singles, id)
			w.mu.Unlock()
		}
		return err
	}
	hb := func(_ context.Context, evs []contracts.Event) error {
		ids := make([]string, len(evs))
		for i, ev := range evs {
			ids[i] = ev.(*contracts.EventBooked).ID
		}
		err := batch(ids)
		if err == nil {
			w.mu.Lock()
			w.windows = append(w.windows, ids)
			w.mu.Unlock()
		}
		return err
	}
	go func() { done <- l.ListenBatch(ctx, h, hb) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ListenBatch: %v", err)
		}
	})
}

// applied returns every ID applied, sorted, and the windows.
func (w *windowLog) applied() (ids []string, windows [][]string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids = slices.Clone(w.singles)
	for _, win := range w.windows {
		ids = append(ids, win...)
	}
	slices.Sort(ids)
	return ids, slices.Clone(w.windows)
}

// waitApplied waits until exactly want (sorted) were applied, each once,
// and the listener acknowledged acked deliveries and left the queue empty.
func (e *env) waitApplied(t *testing.T, w *windowLog, l *rabbitmq.Listener, want []string, acked int64) [][]string {
	t.Helper()
	var windows [][]string
	brokertest.Eventually(t, 30*time.Second, func() error {
		var got []string
		got, windows = w.applied()
		if !slices.Equal(got, want) {
			return fmt.Errorf("applied %v, want each of %v once", got, want)
		}
		if st := l.Stats(); st.Acked != acked {
			return fmt.Errorf("listener %+v, want %d acked", st, acked)
		}
		left, err := peekQueue(e.rabbit.URL, e.queue)
		if err != nil {
			return err
		}
		if len(left) != 0 {
			return fmt.Errorf("%d messages left in the queue", len(left))
		}
		return nil
	})
	return windows
}

// backlog emits bookings ids before the listener starts, so that they
// wait in the queue together.
func (e *env) backlog(t *testing.T, ids []string) {
	t.Helper()
	em := e.mustEmitter(t)
	for _, id := range ids {
		if err := em.Emit(t.Context(), booking(id)); err != nil {
			t.Fatal(err)
		}
	}
}

func bookingIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("b%02d", i)
	}
	return ids
}

// newWindowEnv is an env with a listener of event.booked whose windows
// wait up to a second for the next delivery: a backlog within the
// prefetch makes one window.
func newWindowEnv(t *testing.T) (*env, *rabbitmq.Listener) {
	e := newEnv(t)
	return e, e.mustListener(t, []string{contracts.EventBookedName}, rabbitmq.WithPrefetch(32), rabbitmq.WithBatchWait(time.Second))
}

// applyAll is a handler answer that applies everything.
func applyAll[T any](T) error { return nil }

// TestListenBatchAppliesAWindowAtOnce: a backlog of 20 bookings within the
// prefetch goes to the batch handler in one call, and every delivery is
// acknowledged: nothing is left in the queue.
func TestListenBatchAppliesAWindowAtOnce(t *testing.T) {
	t.Parallel()
	e, l := newWindowEnv(t)
	ids := bookingIDs(20)
	e.backlog(t, ids)
	var w windowLog
	w.listen(t, l, applyAll[[]string], applyAll[string])
	windows := e.waitApplied(t, &w, l, ids, int64(len(ids)))
	if len(windows) != 1 || len(w.singles) != 0 {
		t.Errorf("windows %v and single calls %v, want the 20 bookings in one window", windows, w.singles)
	}
	if st := l.Stats(); st.Batches != 1 || st.Handled != 20 || st.Retried != 0 || st.DeadLettered != 0 {
		t.Errorf("listener %+v, want one batch of 20 handled", st)
	}
}

// TestListenBatchDeadLettersPoisonAlone: a message that does not decode,
// in the middle of a window, goes alone to the dead-letter queue with its
// reason; the bookings around it are applied in the window.
func TestListenBatchDeadLettersPoisonAlone(t *testing.T) {
	t.Parallel()
	e, l := newWindowEnv(t)
	ids := bookingIDs(10)
	e.backlog(t, ids[:5])
	e.publish(t, raw{"poison", contracts.EventBookedName, contracts.EventBookedName, []byte(`{"id":"p","seats":"many"}`)})
	e.backlog(t, ids[5:])
	var w windowLog
	w.listen(t, l, applyAll[[]string], applyAll[string])
	windows := e.waitApplied(t, &w, l, ids, int64(len(ids)))
	dead := e.deadLetters(t, 1)
	if reason, _ := dead["poison"].Headers[msgqueue.HeaderReason].(string); reason != msgqueue.ReasonInvalidPayload {
		t.Errorf("the poison message was dead-lettered with reason %q, want %q", reason, msgqueue.ReasonInvalidPayload)
	}
	if len(windows) != 1 {
		t.Errorf("windows %v, want the 10 bookings in one", windows)
	}
}

// TestListenBatchFallsBackOneByOne: a window the batch handler fails
// (here because it holds a booking the store refuses for good) goes to the
// handler one event at a time: the refused booking is dead-lettered alone
// with the reason permanent, the others are applied once each, without a
// retry; a transient failure of one of them is retried alone.
func TestListenBatchFallsBackOneByOne(t *testing.T) {
	t.Parallel()
	e, l := newWindowEnv(t)
	ids := bookingIDs(8)
	all := append(slices.Clone(ids[:4]), "refused")
	all = append(all, ids[4:]...)
	e.backlog(t, all)
	var (
		mu      sync.Mutex
		batches int // batch-handler calls
		flaky   int // calls for b05
	)
	var w windowLog
	w.listen(t, l, func(win []string) error {
		mu.Lock()
		defer mu.Unlock()
		batches++
		if slices.Contains(win, "refused") {
			return errors.New("the store refused the transaction")
		}
		return nil
	}, func(id string) error {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case id == "refused":
			return msgqueue.Permanent(errors.New("the seats would overflow"))
		case id == "b05":
			if flaky++; flaky == 1 {
				return errors.New("the database is busy")
			}
		}
		return nil
	})
	e.waitApplied(t, &w, l, ids, int64(len(ids)))
	for _, d := range e.deadLetters(t, 1) {
		reason, _ := d.Headers[msgqueue.HeaderReason].(string)
		if !bytes.Contains(d.Body, []byte(`"id":"refused"`)) || reason != msgqueue.ReasonPermanent {
			t.Errorf("dead-lettered %s with reason %q, want the refused booking with %q", d.Body, reason, msgqueue.ReasonPermanent)
		}
	}
	if st := l.Stats(); st.Retried != 1 || st.DeadLettered != 1 || st.Batches != 0 {
		t.Errorf("listener %+v, want one retry (b05), one dead letter, no window applied whole", st)
	}
	if len(w.singles) != len(ids) {
		t.Errorf("single calls %v, want each booking once", w.singles)
	}
	mu.Lock()
	defer mu.Unlock()
	if batches != 1 {
		t.Errorf("%d batch-handler calls, want one (the window of nine)", batches)
	}
}
