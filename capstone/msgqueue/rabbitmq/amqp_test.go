package rabbitmq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/rabbitmq"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// TestWireFormat checks with the test's own client what the emitter put in
// the queue and how the listener declared it.
func TestWireFormat(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustListener(t, []string{contracts.EventCreatedName})
	em := e.mustEmitter(t)

	ev := &contracts.EventCreated{ID: "ev-1", Name: "Opera", LocationID: "loc-1", Hall: "Main", Capacity: 300,
		StartDate: time.Date(2026, time.June, 1, 19, 0, 0, 0, time.UTC), EndDate: time.Date(2026, time.June, 1, 22, 0, 0, 0, time.UTC)}
	if err := em.Emit(t.Context(), ev); err != nil {
		t.Fatalf("Emit: %v", err)
	}

	ds, err := peekQueue(e.rabbit.URL, e.queue)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 {
		t.Fatalf("queue %s holds %d messages, want 1", e.queue, len(ds))
	}
	d := ds[0]
	wantBody, _ := json.Marshal(ev)
	for _, c := range []struct{ what, got, want string }{
		{"exchange", d.Exchange, e.exchange},
		{"routing key", d.RoutingKey, contracts.EventCreatedName},
		{"x-event-name header", fmt.Sprint(d.Headers[rabbitmq.HeaderEventName]), contracts.EventCreatedName},
		{"content type", d.ContentType, "application/json"},
		{"type", d.Type, contracts.EventCreatedName},
		{"delivery mode", fmt.Sprint(d.DeliveryMode), fmt.Sprint(amqp.Persistent)},
		{"body", string(d.Body), string(wantBody)},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if d.MessageId == "" {
		t.Error("the message has no message ID")
	}

	// The exchange is a durable topic exchange: a passive declare with
	// those properties succeeds.
	ch := brokertest.AdminChannel(t, e.rabbit.URL)
	if err := ch.ExchangeDeclarePassive(e.exchange, amqp.ExchangeTopic,
		true,  // durable
		false, // auto-delete
		false, // internal
		false, // no-wait
		nil,   // args
	); err != nil {
		t.Errorf("exchange %s: %v", e.exchange, err)
	}

	// The queue is a quorum queue with a delivery limit and a dead-letter
	// exchange.
	out, err := e.rabbit.Ctl(t.Context(), "-q", "list_queues", "name", "type", "durable", "arguments")
	if errors.Is(err, brokertest.ErrNoCtl) {
		t.Skipf("cannot run rabbitmqctl to inspect the queue: %v", err)
	}
	if err != nil {
		t.Fatalf("inspecting the queue: %v", err)
	}
	var line string
	for l := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(l, e.queue+"\t") {
			line = l
		}
	}
	for _, want := range []string{"quorum", "true", "x-delivery-limit", "x-dead-letter-exchange", rabbitmq.DeadLetterExchange(e.queue)} {
		if !strings.Contains(line, want) {
			t.Errorf("queue %s: %q lacks %q", e.queue, line, want)
		}
	}
}

// TestUnroutableIsAnError emits routable and unroutable events at once: each
// Emit must get its own answer, and only the routable ones reach the queue.
func TestUnroutableIsAnError(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustListener(t, []string{contracts.EventBookedName}) // binds event.booked only
	em := e.mustEmitter(t)

	const goroutines = 50
	var wg sync.WaitGroup
	var routed atomic.Int64
	for g := range goroutines {
		wg.Go(func() {
			if g%2 == 0 {
				if err := em.Emit(t.Context(), booking(fmt.Sprintf("b-%02d", g))); err != nil {
					t.Errorf("routable emit %d: %v", g, err)
					return
				}
				routed.Add(1)
				return
			}
			ev := &contracts.LocationCreated{ID: fmt.Sprintf("loc-%02d", g), Name: "Hall"}
			err := em.Emit(t.Context(), ev)
			if !errors.Is(err, msgqueue.ErrUnroutable) {
				t.Errorf("unroutable emit %d returned %v, want an error wrapping msgqueue.ErrUnroutable", g, err)
			}
		})
	}
	wg.Wait()

	ds, err := peekQueue(e.rabbit.URL, e.queue)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != int(routed.Load()) || len(ds) != goroutines/2 {
		t.Errorf("queue holds %d messages, want %d", len(ds), goroutines/2)
	}
}

// TestStaleDeliveriesAreNeverAcked breaks the listener's connection while its
// handler holds one delivery and 50 more are prefetched. The held delivery's
// ack must be refused (its channel is gone) instead of acknowledging
// whichever message has the same tag on the new channel; every message is
// then processed and the queue ends empty. With amqp091-go's automatic
// recovery, that ack would remove an unprocessed message.
func TestStaleDeliveriesAreNeverAcked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.mustListener(t, []string{contracts.EventBookedName}, rabbitmq.WithPrefetch(50))
	em := e.mustEmitter(t)
	const total = 500
	want := map[string]bool{}
	for i := range total {
		id := fmt.Sprintf("stale-%03d", i)
		want[id] = true
		if err := em.Emit(t.Context(), booking(id)); err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	seen := map[string]int{}
	holding, release := make(chan struct{}), make(chan struct{})
	listenInBackground(t, l, func(_ context.Context, ev contracts.Event) error {
		id := ev.(*contracts.EventBooked).ID
		mu.Lock()
		seen[id]++
		hold := len(seen) == 100 && seen[id] == 1
		mu.Unlock()
		if hold {
			close(holding)
			<-release
		}
		return nil
	})
	brokertest.Receive(t, holding, 30*time.Second, "the handler never reached the 100th message")
	n, err := closeConnections(t.Context(), e.rabbit, e.connName+"listener")
	close(release)
	if err != nil {
		t.Fatal(err)
	}

	brokertest.Eventually(t, 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) < total {
			return fmt.Errorf("%d of %d messages processed", len(seen), total)
		}
		return nil
	})
	// Acks that were on their way when the connection broke never reached
	// the broker, which delivers those messages again: wait until the
	// listener has handled the copies too and the queue holds nothing,
	// ready or unacknowledged.
	brokertest.Eventually(t, 30*time.Second, func() error {
		out, err := e.rabbit.Ctl(t.Context(), "--quiet", "list_queues", "--no-table-headers", "name", "messages")
		if err != nil {
			return err
		}
		for line := range strings.SplitSeq(out, "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == e.queue && f[1] != "0" {
				return fmt.Errorf("%s still holds %s messages", e.queue, f[1])
			}
		}
		return nil
	})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	left, err := peekQueue(e.rabbit.URL, e.queue)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	calls := 0
	for _, c := range seen {
		calls += c
	}
	unique := len(seen)
	mu.Unlock()
	st := l.Stats()
	t.Logf("closed %d connection(s); %d messages, %d processed, %d handler calls (%d duplicates), %d left in the queue; listener %+v",
		n, total, unique, calls, calls-unique, len(left), st)
	if unique != total || len(left) != 0 {
		t.Errorf("processed %d of %d, %d left in the queue", unique, total, len(left))
	}
	if st.AckFailed < 1 || st.Reconnects < 1 {
		t.Errorf("want the held delivery's ack refused and a reconnect, got %+v", st)
	}
}

// TestDialErrors: a malformed URL, wrong credentials and a closed port each
// give one clear sentence, without the password.
func TestDialErrors(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	wrongPassword := strings.Replace(rabbit.URL, "guest:guest", "guest:s3cret-wrong", 1)
	for _, c := range []struct {
		name, url, want string
	}{
		{"malformed URL", "http://127.0.0.1:5672/", "parsing the AMQP URL"},
		{"unparseable URL", "amqp://guest:s3cret-wrong@127.0.0.1:5672/%zz", `parsing the AMQP URL <unparseable URL>: invalid URL escape "%zz"`},
		{"wrong credentials", wrongPassword, "refused the user name or password"},
		{"nothing listening", "amqp://guest:guest@127.0.0.1:1/", "is it running?"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "wrong credentials" && wrongPassword == rabbit.URL {
				t.Skip("the broker URL does not use guest:guest")
			}
			_, errE := rabbitmq.NewEmitter(t.Context(), c.url)
			_, errL := rabbitmq.NewListener(t.Context(), c.url, "q", []string{contracts.EventBookedName})
			for _, err := range []error{errE, errL} {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Errorf("error = %v, want one containing %q", err, c.want)
					continue
				}
				if strings.Contains(err.Error(), "s3cret-wrong") {
					t.Errorf("the error shows the password: %v", err)
				}
			}
		})
	}
}

// TestListenerMisuse: names the queue is not bound for, a second concurrent
// Listen, and a queue redeclared with another delivery limit are errors.
func TestListenerMisuse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.mustListener(t, []string{contracts.EventBookedName})
	if err := l.Listen(t.Context(), nil, contracts.EventCreatedName); err == nil {
		t.Error("Listen for a name the queue is not bound for returned nil")
	}
	// Once the first Listen handled an event, a second one must refuse.
	handled := make(chan struct{})
	var once sync.Once
	listenInBackground(t, l, func(context.Context, contracts.Event) error {
		once.Do(func() { close(handled) })
		return nil
	})
	if err := e.mustEmitter(t).Emit(t.Context(), booking("misuse-1")); err != nil {
		t.Fatal(err)
	}
	brokertest.Receive(t, handled, 30*time.Second, "the first Listen handled nothing")
	if err := l.Listen(t.Context(), nil); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Listen returned %v, want an 'already running' error", err)
	}
	_, err := e.listener(t.Context(), []string{contracts.EventBookedName}, rabbitmq.WithDeliveryLimit(99))
	if err == nil || !strings.Contains(err.Error(), "exists with other arguments") {
		t.Errorf("redeclaring with another delivery limit returned %v", err)
	}
	if _, err := rabbitmq.NewListener(t.Context(), e.rabbit.URL, e.queue, nil); err == nil {
		t.Error("a listener without event names was built")
	}
}

// TestDialFollowsContext: a server that accepts connections but never
// speaks AMQP holds a client until its dial timeout; the constructors give
// up when their context ends instead.
func TestDialFollowsContext(t *testing.T) {
	t.Parallel()
	silent := "amqp://guest:guest@" + brokertest.SilentPort(t) + "/"

	for _, build := range []struct {
		name string
		new  func(ctx context.Context) error
	}{
		{"emitter", func(ctx context.Context) error { _, err := rabbitmq.NewEmitter(ctx, silent); return err }},
		{"listener", func(ctx context.Context) error {
			_, err := rabbitmq.NewListener(ctx, silent, "q", []string{contracts.EventBookedName})
			return err
		}},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		start := time.Now()
		err := build.new(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s against a silent server returned %v, want context.DeadlineExceeded", build.name, err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%s took %v to give up", build.name, took)
		}
	}
}

// TestDeleteTopology deletes what a listener and an emitter declared, and
// nothing else: afterwards the broker knows none of the four names.
func TestDeleteTopology(t *testing.T) {
	ctx := context.Background()
	rabbit := brokertest.AMQP(t)
	exchange, queue := brokertest.Name(t, "events"), brokertest.Name(t, "queue")
	l, err := rabbitmq.NewListener(ctx, rabbit.URL, queue, []string{"event.created"}, rabbitmq.WithExchange(exchange))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rabbitmq.DeleteTopology(brokertest.AdminChannel(t, rabbit.URL), exchange, queue); err != nil {
		t.Fatalf("DeleteTopology: %v", err)
	}
	for _, q := range []string{queue, rabbitmq.DeadLetterQueue(queue)} {
		_, err := rabbitmq.InspectQueue(brokertest.AdminChannel(t, rabbit.URL), q)
		var amqpErr *amqp.Error
		if !errors.As(err, &amqpErr) || amqpErr.Code != amqp.NotFound {
			t.Errorf("queue %s after DeleteTopology: %v, want 404 NOT_FOUND", q, err)
		}
	}
	for _, x := range []string{exchange, rabbitmq.DeadLetterExchange(queue)} {
		err := brokertest.AdminChannel(t, rabbit.URL).ExchangeDeclarePassive(x, amqp.ExchangeTopic, true, false, false, false, nil)
		var amqpErr *amqp.Error
		if !errors.As(err, &amqpErr) || amqpErr.Code != amqp.NotFound {
			t.Errorf("exchange %s after DeleteTopology: %v, want 404 NOT_FOUND", x, err)
		}
	}
}
