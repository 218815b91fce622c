package rabbitmq_test

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/msgqueuetest"
	"example.com/myevents/capstone/msgqueue/rabbitmq"
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
		ch := adminChannel(t, rabbit.URL)
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
	name := fmt.Sprintf("%slistener-%d", e.connName, e.n.Add(1))
	l, err := rabbitmq.NewListener(ctx, e.rabbit.URL, e.queue, names,
		append(append([]rabbitmq.Option{rabbitmq.WithConnectionName(name)}, e.opts...), opts...)...)
	if err == nil {
		e.mu.Lock()
		e.listeners = append(e.listeners, l)
		e.mu.Unlock()
	}
	return l, err
}

// emitter builds an emitter for this env's exchange with a unique
// connection name.
func (e *env) emitter(ctx context.Context, opts ...rabbitmq.Option) (*rabbitmq.Emitter, error) {
	name := fmt.Sprintf("%semitter-%d", e.connName, e.n.Add(1))
	em, err := rabbitmq.NewEmitter(ctx, e.rabbit.URL,
		append(append([]rabbitmq.Option{rabbitmq.WithConnectionName(name)}, e.opts...), opts...)...)
	if err == nil {
		e.mu.Lock()
		e.emitters = append(e.emitters, em)
		e.mu.Unlock()
	}
	return em, err
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

// adminChannel opens a channel of the test's own, closed at the end.
func adminChannel(t *testing.T, url string) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("connecting the test's own client: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("opening the test's channel: %v", err)
	}
	return ch
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
	if err := ch.Confirm(false /* no-wait */); err != nil {
		return fmt.Errorf("enabling confirms: %w", err)
	}
	dc, err := ch.PublishWithDeferredConfirm(exchange, key,
		true,  // mandatory
		false, // immediate
		msg)
	if err != nil {
		return fmt.Errorf("publishing: %w", err)
	}
	if !dc.Wait() {
		return fmt.Errorf("the broker nacked the message")
	}
	return nil
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
