package rabbitmq_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

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
