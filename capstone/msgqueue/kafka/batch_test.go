package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// calls records what ListenBatch handed over, in the order of the calls
// (they never overlap): the IDs applied, and the windows the batch handler
// applied.
type calls struct {
	mu      sync.Mutex
	applied []string   // IDs of the events of every call that returned nil
	windows [][]string // IDs per batch-handler call that returned nil
	failed  [][]string // IDs per batch-handler call that failed
	singles []string   // IDs per handler call, whatever it returned
}

// listenBatch runs l.ListenBatch for the names until the test ends; batch
// answers a window (nil applies it), single one event.
func (c *calls) listenBatch(t *testing.T, l *Listener, batch func(ids []string) error, single func(id string) error, names ...string) {
	t.Helper()
	h := func(_ context.Context, ev contracts.Event) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.singles = append(c.singles, idOf(ev))
		err := single(idOf(ev))
		if err == nil {
			c.applied = append(c.applied, idOf(ev))
		}
		return err
	}
	hb := func(_ context.Context, evs []contracts.Event) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		ids := make([]string, len(evs))
		for i, ev := range evs {
			ids[i] = idOf(ev)
		}
		if err := batch(ids); err != nil {
			c.failed = append(c.failed, ids)
			return err
		}
		c.windows = append(c.windows, ids)
		c.applied = append(c.applied, ids...)
		return nil
	}
	listenBatch(t, l, h, hb, names...)
}

// snapshot copies what was recorded.
func (c *calls) snapshot() (applied []string, windows, failed [][]string, singles []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.applied), slices.Clone(c.windows), slices.Clone(c.failed), slices.Clone(c.singles)
}

// waitApplied waits until want was applied, each once and in that order.
func (c *calls) waitApplied(t *testing.T, want []string) {
	t.Helper()
	brokertest.Eventually(t, wait, func() error {
		if got, _, _, _ := c.snapshot(); !slices.Equal(got, want) {
			return fmt.Errorf("applied %v, want %v in that order", got, want)
		}
		return nil
	})
}

// TestListenBatchAppliesWindowsInOrder: a backlog on one partition goes to
// the batch handler in windows (what had arrived together), in offset
// order. A record that does not
// decode, in the middle, is dead-lettered in its place, and an event of a
// name not listened for is skipped: neither reaches a handler, and the
// bookings around them are each applied once. The group listener commits,
// and both listeners catch up with, the end of the log.
func TestListenBatchAppliesWindowsInOrder(t *testing.T) {
	forEachListener(t, func(t *testing.T, mode string, e *env, l *Listener) {
		em := e.emitter()
		want := ids("b", 40)
		for i, id := range want[:20] {
			e.emit(em, booked(id, "ev-1", i+1))
		}
		e.produceRaw("ev-1", []byte(`{"eventName":"event.booked","payload":{"id":"poison","seats":"many"}}`))
		e.emit(em, &contracts.EventCreated{ID: "ev-1", Name: "Show", LocationID: "loc", Hall: "Main", Capacity: 10,
			StartDate: time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC), EndDate: time.Date(2026, 12, 6, 22, 0, 0, 0, time.UTC)})
		for i, id := range want[20:] {
			e.emit(em, booked(id, "ev-1", 21+i))
		}

		var c calls
		c.listenBatch(t, l, applyAll[[]string], applyAll[string], contracts.EventBookedName)
		c.waitApplied(t, want)
		awaitCaughtUp(t, l)
		// A run of one record (one that arrived alone) goes to the
		// handler alone, as on RabbitMQ.
		_, windows, failed, _ := c.snapshot()
		if len(failed) != 0 {
			t.Errorf("failed windows %v, want none", failed)
		}
		if !slices.ContainsFunc(windows, func(w []string) bool { return len(w) > 1 }) {
			t.Errorf("windows %v, want at least one of several bookings", windows)
		}
		dead := e.records(e.dlq)
		if len(dead) != 1 || header(dead[0], HeaderReason) != ReasonInvalidPayload {
			t.Fatalf("dead letters %v, want the poison record alone, with reason %s", dead, ReasonInvalidPayload)
		}
		if mode == "group" {
			brokertest.Eventually(t, wait, func() error { return e.committedAll(l.group) })
		}
	})
}

// TestListenBatchFallsBackOneByOne: when the batch handler fails (here
// on every window, as when the store refuses the transaction), each event
// goes to the handler alone, in order: a booking the handler refuses for
// good is dead-lettered alone with the reason permanent, the others are
// applied once each, and a transient failure of one of them is retried
// alone. Which records form a window depends on how they arrived;
// TestFinishRunFallsBackOneByOne checks the fallback of one window.
func TestListenBatchFallsBackOneByOne(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.replayListener()
	em := e.emitter()
	want := ids("b", 8)
	all := append(slices.Clone(want[:4]), "refused")
	all = append(all, want[4:]...)
	for i, id := range all {
		e.emit(em, booked(id, "ev-1", i+1))
	}

	flaky := 0 // calls for b-005; handler calls never overlap
	var c calls
	c.listenBatch(t, l, func([]string) error {
		return errors.New("the store refused the transaction")
	}, func(id string) error {
		switch {
		case id == "refused":
			return msgqueue.Permanent(errors.New("the seats would overflow"))
		case id == "b-005":
			if flaky++; flaky == 1 {
				return errors.New("the database is busy")
			}
		}
		return nil
	})
	c.waitApplied(t, want)
	awaitCaughtUp(t, l)

	alone := slices.Insert(slices.Clone(all), slices.Index(all, "b-005"), "b-005") // retried once
	if _, windows, _, singles := c.snapshot(); !slices.Equal(singles, alone) || len(windows) != 0 {
		t.Errorf("single calls %v and windows applied %v, want no window and %v one by one", singles, windows, alone)
	}
	dead := e.records(e.dlq)
	if len(dead) != 1 || header(dead[0], HeaderReason) != ReasonPermanent || !contains(string(dead[0].Value), `"id":"refused"`) {
		t.Fatalf("dead letters %v, want the refused booking alone, with reason %s", dead, ReasonPermanent)
	}
}

// recorder stands in for a listener's handlers in tests of finishRun: it
// notes what each was handed, and what was reported done.
type recorder struct {
	windows   [][]string // IDs per batch-handler call
	singles   []string   // IDs per handler call
	done      []int64    // offsets reported done
	failBatch bool       // the batch handler fails
}

// worker is a worker for the names whose handlers are r's.
func (r *recorder) worker(t *testing.T, names ...string) *worker {
	o, err := buildOptions([]Option{WithLogger(testLogger(t))})
	if err != nil {
		t.Fatal(err)
	}
	filter := map[string]bool{}
	for _, n := range names {
		filter[n] = true
	}
	return &worker{
		l: &Listener{opts: o, logger: o.logger}, handlerCtx: context.Background(), filter: filter,
		handler: func(_ context.Context, ev contracts.Event) error {
			r.singles = append(r.singles, idOf(ev))
			return nil
		},
		batch: func(_ context.Context, evs []contracts.Event) error {
			var ids []string
			for _, ev := range evs {
				ids = append(ids, idOf(ev))
			}
			r.windows = append(r.windows, ids)
			if r.failBatch {
				return errors.New("the store refused the transaction")
			}
			return nil
		},
	}
}

func (r *recorder) mark(m *sarama.ConsumerMessage) { r.done = append(r.done, m.Offset) }

// decodedRun is evs as a partition's run, at offsets 0, 1, ...
func decodedRun(t *testing.T, evs ...contracts.Event) []decoded {
	t.Helper()
	var run []decoded
	for i, ev := range evs {
		value, err := contracts.Wrap(ev)
		if err != nil {
			t.Fatal(err)
		}
		run = append(run, decode(&sarama.ConsumerMessage{Value: value, Offset: int64(i)}))
	}
	return run
}

// TestFinishRunFallsBackOneByOne: finishRun hands a run of records that
// are all to be handled to the batch handler in one call; when that call
// fails, to the handler one by one, in order, and reports each record
// done once. The records are decoded as a partition's would be.
func TestFinishRunFallsBackOneByOne(t *testing.T) {
	r := &recorder{failBatch: true}
	w := r.worker(t, contracts.EventBookedName)
	run := decodedRun(t, booked("a", "ev-1", 1), booked("b", "ev-1", 1), booked("c", "ev-1", 1))
	if !w.finishRun(context.Background(), run, r.mark) {
		t.Fatal("finishRun reported the context ended")
	}
	if fmt.Sprint(r.windows) != "[[a b c]]" || fmt.Sprint(r.singles) != "[a b c]" || fmt.Sprint(r.done) != "[0 1 2]" {
		t.Errorf("after a failed window: windows %v, singles %v, done %v; want [[a b c]], [a b c], [0 1 2]", r.windows, r.singles, r.done)
	}

	r = &recorder{}
	w = r.worker(t, contracts.EventBookedName)
	w.finishRun(context.Background(), decodedRun(t, booked("d", "ev-1", 1), booked("e", "ev-1", 1)), r.mark)
	if fmt.Sprint(r.windows) != "[[d e]]" || len(r.singles) != 0 || fmt.Sprint(r.done) != "[1]" {
		t.Errorf("after a window applied: windows %v, singles %v, done %v; want [[d e]], none, [1] (the last of the window)", r.windows, r.singles, r.done)
	}
}

// TestFinishRunWindowsHoldOneEventName: a window holds events of one name
// (skipped records aside), so an event.created among its bookings is
// handled alone instead of making a window the batch handler refuses.
func TestFinishRunWindowsHoldOneEventName(t *testing.T) {
	r := &recorder{}
	w := r.worker(t, contracts.EventBookedName, contracts.EventCreatedName)
	at := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	created := func(id string) contracts.Event {
		return &contracts.EventCreated{ID: id, Name: "Show", LocationID: "loc", Hall: "Main", Capacity: 10, StartDate: at, EndDate: at}
	}
	run := decodedRun(t, created("ev-1"), booked("a", "ev-1", 1), booked("b", "ev-1", 1), created("ev-2"), booked("c", "ev-2", 1))
	w.finishRun(context.Background(), run, r.mark)
	if fmt.Sprint(r.windows) != "[[a b]]" || fmt.Sprint(r.singles) != "[ev-1 ev-2 c]" || fmt.Sprint(r.done) != "[0 2 3 4]" {
		t.Errorf("windows %v, singles %v, done %v; want [[a b]], [ev-1 ev-2 c], [0 2 3 4]", r.windows, r.singles, r.done)
	}
}

// applyAll is a handler answer that applies everything.
func applyAll[T any](T) error { return nil }
