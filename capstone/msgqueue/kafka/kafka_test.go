package kafka

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/goleak"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/msgqueuetest"
	"example.com/myevents/labs/brokertest"
)

// TestConformance runs the transport suite against the embedded (or
// configured) Kafka, with the group listener: "restart" closes the
// listener and builds a new member of the same group.
func TestConformance(t *testing.T) {
	// Start the shared cluster before the suite takes its goroutine
	// snapshot: it runs for the whole test binary.
	brokertest.Kafka(t)
	msgqueuetest.Run(t, msgqueuetest.Transport{
		Name: "kafka",
		NewEnv: func(t *testing.T) *msgqueuetest.Env {
			return newEnv(t).suiteEnv()
		},
		IgnoreGoroutines: []goleak.Option{
			// Started once by sarama's metrics, never stopped.
			goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"),
		},
	})
}

// suiteEnv gives the conformance suite its hooks. Every client this env
// builds dials through one tracking dialer, so Interrupt can break exactly
// their connections (the broker is shared).
func (e *env) suiteEnv() *msgqueuetest.Env {
	group := e.topic + ".svc"
	d := &trackingDialer{}
	opts := func(names ...string) []Option {
		return e.opts(
			WithRetryBackoff(20*time.Millisecond, 200*time.Millisecond),
			WithSaramaConfig(func(cfg *sarama.Config) {
				cfg.Net.Proxy.Enable = true
				cfg.Net.Proxy.Dialer = d
			}),
		)
	}
	return &msgqueuetest.Env{
		NewListener: func(ctx context.Context, names ...string) (msgqueue.Listener, error) {
			return NewGroupListener(ctx, e.brokers, group, names, opts()...)
		},
		NewEmitter: func(ctx context.Context) (msgqueue.Emitter, error) {
			return NewEmitter(ctx, e.brokers, opts()...)
		},
		DeadLetters: func(ctx context.Context) ([]msgqueuetest.DeadLetter, error) {
			recs, err := readTopic(e.brokers, e.dlq)
			if err != nil {
				return nil, err
			}
			out := make([]msgqueuetest.DeadLetter, 0, len(recs))
			for _, r := range recs {
				out = append(out, msgqueuetest.DeadLetter{
					ID:   string(r.Key), // InjectPoison puts the message ID in the key
					Name: header(r, HeaderEventName),
					Body: r.Value,
				})
			}
			return out, nil
		},
		InjectPoison: func(ctx context.Context, kind msgqueuetest.PoisonKind, id string) error {
			value, err := poisonRecord(kind)
			if err != nil {
				return err
			}
			_, _, err = produce(e.brokers, e.topic, id, value)
			return err
		},
		DeliveryLimit: 3, // e.opts
		Poison:        msgqueuetest.AllPoison,
		Interrupt: func(ctx context.Context) error {
			n := d.breakAll()
			e.t.Logf("interrupt: closed %d connections to Kafka", n)
			return nil
		},
	}
}

// poisonRecord is the record value carrying a poison message of kind.
func poisonRecord(kind msgqueuetest.PoisonKind) ([]byte, error) {
	name, body := msgqueuetest.PoisonMessage(kind)
	switch kind {
	case msgqueuetest.Malformed:
		// Not even an envelope.
		return body, nil
	case msgqueuetest.MissingName:
		return json.Marshal(map[string]json.RawMessage{"payload": body})
	case msgqueuetest.UnknownName, msgqueuetest.Invalid:
		return json.Marshal(map[string]any{"eventName": name, "payload": json.RawMessage(body)})
	}
	return nil, fmt.Errorf("unknown poison kind %q", kind)
}

// trackingDialer dials TCP and remembers the connections, so that a test
// can break them all the way an outage does.
type trackingDialer struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (d *trackingDialer) Dial(network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{Timeout: 10 * time.Second}).Dial(network, addr)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.conns = append(d.conns, c)
	d.mu.Unlock()
	return c, nil
}

// breakAll closes every connection dialled so far and reports how many.
func (d *trackingDialer) breakAll() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.Close()
	}
	n := len(d.conns)
	d.conns = nil
	return n
}

// TestReplayReadsAhead checks the replay's read-ahead: a replay's
// partition consumers may hold replayReadAhead fetched records, a group's
// keep sarama's default, and WithSaramaConfig still has the last word.
func TestReplayReadsAhead(t *testing.T) {
	o, err := buildOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := consumerConfig(context.Background(), o, true).ChannelBufferSize; got != replayReadAhead {
		t.Errorf("replay: ChannelBufferSize %d, want %d", got, replayReadAhead)
	}
	if got, want := consumerConfig(context.Background(), o, false).ChannelBufferSize, sarama.NewConfig().ChannelBufferSize; got != want {
		t.Errorf("group: ChannelBufferSize %d, want sarama's default %d", got, want)
	}
	o, err = buildOptions([]Option{WithSaramaConfig(func(c *sarama.Config) { c.ChannelBufferSize = 7 })})
	if err != nil {
		t.Fatal(err)
	}
	if got := consumerConfig(context.Background(), o, true).ChannelBufferSize; got != 7 {
		t.Errorf("replay with WithSaramaConfig: ChannelBufferSize %d, want 7", got)
	}
}

// TestListenersSeeNewPartitionsSoon: both modes refresh the topic's
// metadata every metadataRefresh, not sarama's 10 minutes, so a partition
// added to the topic is read within it (TestNewPartitionsAreRead).
func TestListenersSeeNewPartitionsSoon(t *testing.T) {
	o, err := buildOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, replay := range []bool{true, false} {
		if got := consumerConfig(context.Background(), o, replay).Metadata.RefreshFrequency; got != metadataRefresh || got > time.Minute {
			t.Errorf("replay %v: Metadata.RefreshFrequency %v, want %v", replay, got, metadataRefresh)
		}
	}
}
