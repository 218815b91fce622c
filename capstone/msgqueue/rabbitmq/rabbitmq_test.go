package rabbitmq_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/msgqueuetest"
	"example.com/myevents/capstone/msgqueue/rabbitmq"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

func TestMain(m *testing.M) { brokertest.Main(m) }

// TestConformance runs the transport suite against the real broker.
func TestConformance(t *testing.T) {
	// Start the shared broker (a container, perhaps) before the suite takes
	// its goroutine snapshot: it runs for the whole test binary.
	brokertest.AMQP(t)
	msgqueuetest.Run(t, msgqueuetest.Transport{
		Name: "rabbitmq",
		NewEnv: func(t *testing.T) *msgqueuetest.Env {
			return newEnv(t).suiteEnv()
		},
	})
}

// suiteEnv gives the conformance suite its hooks.
func (e *env) suiteEnv() *msgqueuetest.Env {
	return &msgqueuetest.Env{
		NewListener: func(ctx context.Context, names ...string) (msgqueue.Listener, error) {
			return e.listener(ctx, names)
		},
		NewEmitter: func(ctx context.Context) (msgqueue.Emitter, error) {
			return e.emitter(ctx)
		},
		DeadLetters: func(ctx context.Context) ([]msgqueuetest.DeadLetter, error) {
			ds, err := peekQueue(e.rabbit.URL, rabbitmq.DeadLetterQueue(e.queue))
			if err != nil {
				return nil, err
			}
			out := make([]msgqueuetest.DeadLetter, 0, len(ds))
			for _, d := range ds {
				name, _ := d.Headers[rabbitmq.HeaderEventName].(string)
				out = append(out, msgqueuetest.DeadLetter{ID: d.MessageId, Name: name, Body: d.Body})
			}
			return out, nil
		},
		DeliveryLimit: msgqueue.DefaultDeliveryLimit, // newEnv sets none
		Poison:        msgqueuetest.AllPoison,
		InjectPoison: func(ctx context.Context, kind msgqueuetest.PoisonKind, id string) error {
			name, body := msgqueuetest.PoisonMessage(kind)
			headers := amqp.Table{}
			if name != "" {
				headers[rabbitmq.HeaderEventName] = name
			}
			return publishRaw(e.rabbit.URL, "", e.queue, amqp.Publishing{
				Headers:      headers,
				ContentType:  "application/json",
				DeliveryMode: amqp.Persistent,
				MessageId:    id,
				Body:         body,
			})
		},
		Interrupt: func(ctx context.Context) error {
			n, err := closeConnections(ctx, e.rabbit, e.connName)
			if err == nil {
				e.t.Logf("interrupt: closed %d connections named %s*", n, e.connName)
			}
			return err
		},
	}
}

// connectionNameRE finds the connection_name client property in a line of
// rabbitmqctl list_connections pid client_properties (3.x and 4.x formats).
var connectionNameRE = regexp.MustCompile(`\{"connection_name",(?:longstr,)?"([^"]*)"\}`)

// closeConnections closes, through the broker, every connection whose
// name starts with prefix, and only those: the broker is shared.
func closeConnections(ctx context.Context, rabbit *brokertest.RabbitMQ, prefix string) (int, error) {
	out, err := rabbit.Ctl(ctx, "-q", "list_connections", "pid", "client_properties")
	if err != nil {
		return 0, fmt.Errorf("listing connections: %w", err)
	}
	var pids []string
	for line := range strings.SplitSeq(out, "\n") {
		m := connectionNameRE.FindStringSubmatch(line)
		if m == nil || !strings.HasPrefix(m[1], prefix) {
			continue
		}
		pid, _, _ := strings.Cut(line, "\t")
		pids = append(pids, strings.TrimSpace(pid))
	}
	if len(pids) == 0 {
		return 0, fmt.Errorf("no connection named %s* is open", prefix)
	}
	for _, pid := range pids {
		if _, err := rabbit.Ctl(ctx, "close_connection", pid, "msgqueue test: simulated outage"); err != nil {
			return 0, fmt.Errorf("closing connection %s: %w", pid, err)
		}
	}
	return len(pids), nil
}

// windowLog records what ListenBatch handed over: the windows to the
// batch handler, the events to the one-event handler.
type windowLog struct {
	mu      sync.Mutex
	windows [][]string // booking IDs per batch-handler call that returned nil
	singles []string   // booking IDs per handler call that returned nil
}

// noted appends v to *list when err is nil (a handler call that
// succeeded), and returns err.
func noted[T any](w *windowLog, list *[]T, v T, err error) error {
	if err == nil {
		w.mu.Lock()
		*list = append(*list, v)
		w.mu.Unlock()
	}
	return err
}

// listen runs l.ListenBatch until the test ends. batch answers a window
// (nil applies it), single one event.
func (w *windowLog) listen(t *testing.T, l *rabbitmq.Listener, batch func(ids []string) error, single func(id string) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	h := func(_ context.Context, ev contracts.Event) error {
		id := eventID(ev)
		return noted(w, &w.singles, id, single(id))
	}
	hb := func(_ context.Context, evs []contracts.Event) error {
		ids := make([]string, len(evs))
		for i, ev := range evs {
			ids[i] = eventID(ev)
		}
		return noted(w, &w.windows, ids, batch(ids))
	}
	go func() { done <- l.ListenBatch(ctx, h, hb) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ListenBatch: %v", err)
		}
	})
}

// eventID is the ID of a booking or of an event.created.
func eventID(ev contracts.Event) string {
	if e, ok := ev.(*contracts.EventCreated); ok {
		return e.ID
	}
	return ev.(*contracts.EventBooked).ID
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

// TestListenBatchWindowsHoldOneEventName: an event.created in the middle
// of a backlog of bookings goes to the handler alone, and the bookings
// before and after it to the batch handler in a window each: a batch
// handler applies one kind of event at a time, and would refuse the
// window whole.
func TestListenBatchWindowsHoldOneEventName(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.mustListener(t, []string{contracts.EventBookedName, contracts.EventCreatedName},
		rabbitmq.WithPrefetch(32), rabbitmq.WithBatchWait(time.Second))
	ids := bookingIDs(10)
	e.backlog(t, ids[:5])
	at := time.Date(2026, time.May, 1, 20, 0, 0, 0, time.UTC)
	created := &contracts.EventCreated{ID: "show", Name: "Show", LocationID: "loc", Hall: "Main", Capacity: 10, StartDate: at, EndDate: at}
	if err := e.mustEmitter(t).Emit(t.Context(), created); err != nil {
		t.Fatal(err)
	}
	e.backlog(t, ids[5:])
	var w windowLog
	w.listen(t, l, applyAll[[]string], applyAll[string])
	windows := e.waitApplied(t, &w, l, append(slices.Clone(ids), "show"), int64(len(ids)+1))
	if fmt.Sprint(windows) != fmt.Sprint([][]string{ids[:5], ids[5:]}) || fmt.Sprint(w.singles) != "[show]" {
		t.Errorf("windows %v and single calls %v, want %v and %v, then [show] alone", windows, w.singles, ids[:5], ids[5:])
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
