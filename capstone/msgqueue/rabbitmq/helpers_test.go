package rabbitmq_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/rabbitmq"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// env is one test's namespace on the shared broker: its own exchange, queue
// and connection names.
type env struct {
	t        *testing.T
	rabbit   *brokertest.RabbitMQ
	exchange string
	queue    string
	connName string // prefix of every connection name this env uses
	n        atomic.Int64
	opts     []rabbitmq.Option

	mu        sync.Mutex
	emitters  []*rabbitmq.Emitter
	listeners []*rabbitmq.Listener
}

// newEnv makes unique names and deletes what they name when the test ends.
func newEnv(t *testing.T, opts ...rabbitmq.Option) *env {
	t.Helper()
	rabbit := brokertest.AMQP(t)
	name := brokertest.Name(t, "mq")
	e := &env{
		t:        t,
		rabbit:   rabbit,
		exchange: name + ".events",
		queue:    name + ".svc",
		connName: name + "/",
	}
	e.opts = append([]rabbitmq.Option{
		rabbitmq.WithExchange(e.exchange),
		rabbitmq.WithLogger(testLogger(t)),
		rabbitmq.WithRetryBackoff(20*time.Millisecond, 200*time.Millisecond),
		rabbitmq.WithReconnectBackoff(50*time.Millisecond, time.Second),
	}, opts...)
	t.Cleanup(func() {
		e.logStats()
		ch := brokertest.AdminChannel(t, rabbit.URL)
		for _, q := range []string{e.queue, rabbitmq.DeadLetterQueue(e.queue)} {
			if _, err := ch.QueueDelete(q, false /* if-unused */, false /* if-empty */, false /* no-wait */); err != nil {
				t.Logf("deleting queue %s: %v", q, err)
			}
		}
		for _, x := range []string{e.exchange, rabbitmq.DeadLetterExchange(e.queue)} {
			if err := ch.ExchangeDelete(x, false /* if-unused */, false /* no-wait */); err != nil {
				t.Logf("deleting exchange %s: %v", x, err)
			}
		}
	})
	return e
}

// testLogger shows warnings in the test output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// listener builds a listener for this env's queue with a unique connection
// name.
func (e *env) listener(ctx context.Context, names []string, opts ...rabbitmq.Option) (*rabbitmq.Listener, error) {
	l, err := rabbitmq.NewListener(ctx, e.rabbit.URL, e.queue, names, e.options("listener", opts)...)
	return track(e, &e.listeners, l, err)
}

// emitter builds an emitter for this env's exchange with a unique
// connection name.
func (e *env) emitter(ctx context.Context, opts ...rabbitmq.Option) (*rabbitmq.Emitter, error) {
	em, err := rabbitmq.NewEmitter(ctx, e.rabbit.URL, e.options("emitter", opts)...)
	return track(e, &e.emitters, em, err)
}

// options are the env's options, then opts, with a connection name of
// its own for the next client of that kind.
func (e *env) options(kind string, opts []rabbitmq.Option) []rabbitmq.Option {
	name := fmt.Sprintf("%s%s-%d", e.connName, kind, e.n.Add(1))
	return append(append([]rabbitmq.Option{rabbitmq.WithConnectionName(name)}, e.opts...), opts...)
}

// track adds a client that was built (err == nil) to the env's list, for
// logStats.
func track[T any](e *env, list *[]T, client T, err error) (T, error) {
	if err == nil {
		e.mu.Lock()
		*list = append(*list, client)
		e.mu.Unlock()
	}
	return client, err
}

// logStats logs the counters of the emitters and listeners that went
// through a reconnect.
func (e *env) logStats() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, em := range e.emitters {
		if st := em.Stats(); st.Reconnects > 0 || st.Resent > 0 {
			e.t.Logf("emitter %d: %+v", i+1, st)
		}
	}
	for i, l := range e.listeners {
		if st := l.Stats(); st.Reconnects > 0 || st.AckFailed > 0 {
			e.t.Logf("listener %d: %+v", i+1, st)
		}
	}
}

// mustListener and mustEmitter build and close at the end of the test.
func (e *env) mustListener(t *testing.T, names []string, opts ...rabbitmq.Option) *rabbitmq.Listener {
	t.Helper()
	l, err := e.listener(t.Context(), names, opts...)
	if err != nil {
		t.Fatalf("building listener: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func (e *env) mustEmitter(t *testing.T, opts ...rabbitmq.Option) *rabbitmq.Emitter {
	t.Helper()
	em, err := e.emitter(t.Context(), opts...)
	if err != nil {
		t.Fatalf("building emitter: %v", err)
	}
	t.Cleanup(func() { _ = em.Close() })
	return em
}

// listenInBackground runs l.Listen until the test ends.
func listenInBackground(t *testing.T, l *rabbitmq.Listener, h msgqueue.Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- l.Listen(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Listen: %v", err)
		}
	})
}

// booking returns a valid EventBooked with the given ID.
func booking(id string) *contracts.EventBooked {
	return &contracts.EventBooked{ID: id, EventID: "event-1", UserID: "user-1", Seats: 1,
		Date: time.Date(2026, time.May, 1, 20, 0, 0, 0, time.UTC)}
}

// callCounter counts a handler's calls per booking ID.
type callCounter struct {
	mu    sync.Mutex
	calls map[string]int // by booking ID, under mu
}

// handler counts each call and returns answer(id): nil handles the
// event, an error asks for it again. answer runs under c.mu.
func (c *callCounter) handler(answer func(id string) error) msgqueue.Handler {
	return func(_ context.Context, ev contracts.Event) error {
		id := ev.(*contracts.EventBooked).ID
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.calls == nil {
			c.calls = map[string]int{}
		}
		c.calls[id]++
		return answer(id)
	}
}

// peekQueue reads every message of a queue without taking them: it gets
// them unacknowledged and closes its connection, which puts them back.
func peekQueue(url, queue string) ([]amqp.Delivery, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return nil, fmt.Errorf("connecting to read %s: %w", queue, err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("opening a channel to read %s: %w", queue, err)
	}
	var out []amqp.Delivery
	for {
		d, ok, err := ch.Get(queue, false /* auto-ack */)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", queue, err)
		}
		if !ok {
			return out, nil
		}
		out = append(out, d)
	}
}

// drainQueue takes every message of a queue the test owns, with a consumer
// of its own (much faster than one basic.get per message).
func drainQueue(t *testing.T, url, queue string) ([]amqp.Delivery, error) {
	ch := brokertest.AdminChannel(t, url)
	q, err := rabbitmq.InspectQueue(ch, queue)
	if err != nil {
		return nil, fmt.Errorf("counting the messages of %s: %w", queue, err)
	}
	deliveries, err := ch.Consume(queue, "",
		true,  // auto-ack: the test takes the messages for good
		false, // exclusive
		false, // no-local
		false, // no-wait
		nil,   // args
	)
	if err != nil {
		return nil, fmt.Errorf("consuming %s: %w", queue, err)
	}
	out := make([]amqp.Delivery, 0, q.Messages)
	timeout := time.After(30 * time.Second)
	for len(out) < q.Messages {
		select {
		case d := <-deliveries:
			out = append(out, d)
		case <-timeout:
			return out, fmt.Errorf("read %d of the %d messages of %s", len(out), q.Messages, queue)
		}
	}
	return out, nil
}

// publishRaw publishes one message with a client of the test's own and
// waits for the broker's confirm.
func publishRaw(url, exchange, key string, msg amqp.Publishing) error {
	conn, err := amqp.Dial(url)
	if err != nil {
		return fmt.Errorf("connecting to publish: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("opening a channel: %w", err)
	}
	return brokertest.PublishConfirmed(ch, exchange, key, msg)
}

// proxy forwards TCP connections to the broker until cut, which drops every
// connection without a word (as a crashed or restarting broker does) and
// refuses new ones until restore. The shared broker itself is never touched.
type proxy struct {
	ln      net.Listener
	target  string
	refused atomic.Int64 // connections refused while cut

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// newProxy starts a proxy to the broker of brokerURL and returns it with the
// URL that goes through it.
func newProxy(t *testing.T, brokerURL string) (*proxy, string) {
	t.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("starting the proxy: %v", err)
	}
	p := &proxy{ln: ln, target: u.Host, conns: map[net.Conn]bool{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
		p.wg.Wait()
	})
	u.Host = ln.Addr().String()
	return p, u.String()
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			p.refused.Add(1)
			_ = c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
		}
		p.wg.Go(func() { pipe(up, c) })
		p.wg.Go(func() { pipe(c, up) })
	}
}

// cut drops every connection and refuses new ones.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

// restore accepts connections again.
func (p *proxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}
