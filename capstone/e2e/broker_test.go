package e2e_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/IBM/sarama"
	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/capstone/internal/app"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/kafka"
	"example.com/myevents/capstone/msgqueue/rabbitmq"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// recorder wraps BookingService's broker handler: it records every event
// the service applied, and can hold events back until released.
type recorder struct {
	mu      sync.Mutex
	applied []contracts.Event
	entered chan contracts.Event // if set, gets each event before it is held
	hold    chan struct{}        // if set, each event waits until it is closed
	release sync.Once
}

// holding returns a recorder that holds every event until Release.
// Pass it to start, which releases it before it stops the service (a
// held handler would keep the service from stopping).
func holding() *recorder {
	return &recorder{hold: make(chan struct{}), entered: make(chan contracts.Event, 1000)}
}

// Release lets held events through.
func (r *recorder) Release() {
	if r.hold != nil {
		r.release.Do(func() { close(r.hold) })
	}
}

func (r *recorder) wrap(next msgqueue.Handler) msgqueue.Handler {
	return func(ctx context.Context, ev contracts.Event) error {
		if r.entered != nil {
			r.entered <- ev
		}
		if r.hold != nil {
			<-r.hold
		}
		err := next(ctx, ev)
		if err == nil {
			r.mu.Lock()
			r.applied = append(r.applied, ev)
			r.mu.Unlock()
		}
		return err
	}
}

// events returns what was applied so far.
func (r *recorder) events() []contracts.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.applied)
}

// count says how often an event of that name and ID was applied.
func (r *recorder) count(name, id string) int {
	n := 0
	for _, ev := range r.events() {
		if ev.EventName() == name && idOf(ev) == id {
			n++
		}
	}
	return n
}

// awaitCount waits until every id of that name was applied n times.
func (r *recorder) awaitCount(t *testing.T, name string, n int, ids ...string) {
	t.Helper()
	brokertest.Eventually(t, wait, func() error {
		for _, id := range ids {
			if got := r.count(name, id); got != n {
				return fmt.Errorf("%s %s applied %d times, want %d", name, id, got, n)
			}
		}
		return nil
	})
}

// idOf returns the ID of the entity or booking an event is about.
func idOf(ev contracts.Event) string {
	switch e := ev.(type) {
	case *contracts.LocationCreated:
		return e.ID
	case *contracts.EventCreated:
		return e.ID
	case *contracts.EventBooked:
		return e.ID
	}
	return ""
}

// counter counts the records the broker holds for the test, independently
// of the services: on Kafka the topic's end offsets, on RabbitMQ a queue
// of the test's own bound to every event name.
type counter func() int

// countRecords starts counting; with RabbitMQ, only what is emitted from
// now on counts.
func countRecords(t *testing.T, cfg app.Config) counter {
	t.Helper()
	switch cfg.Broker {
	case app.Kafka:
		client, err := sarama.NewClient(cfg.KafkaBrokers, saramaConfig())
		if err != nil {
			t.Fatalf("counting records: %v", err)
		}
		t.Cleanup(func() { client.Close() })
		return func() int {
			t.Helper()
			if err := client.RefreshMetadata(cfg.Topic); err != nil {
				t.Fatalf("counting records: %v", err)
			}
			ps, err := client.Partitions(cfg.Topic)
			if err != nil {
				t.Fatalf("counting records: %v", err)
			}
			total := 0
			for _, p := range ps {
				end, err := client.GetOffset(cfg.Topic, p, sarama.OffsetNewest)
				if err != nil {
					t.Fatalf("counting records: %v", err)
				}
				total += int(end)
			}
			return total
		}
	default:
		ch, closeConn, err := openChannel(cfg.AMQPURL)
		if err != nil {
			t.Fatalf("counting records: %v", err)
		}
		t.Cleanup(func() { closeConn() })
		// The exchange may not exist yet; declaring it is idempotent.
		if err := ch.ExchangeDeclare(cfg.Exchange, amqp.ExchangeTopic, true /* durable */, false /* autoDelete */, false /* internal */, false /* noWait */, nil); err != nil {
			t.Fatalf("counting records: %v", err)
		}
		// Exclusive: the queue goes with the test's connection.
		q, err := ch.QueueDeclare("", false /* durable */, true /* autoDelete */, true /* exclusive */, false /* noWait */, nil)
		if err != nil {
			t.Fatalf("counting records: %v", err)
		}
		if err := ch.QueueBind(q.Name, "#", cfg.Exchange, false /* noWait */, nil); err != nil {
			t.Fatalf("counting records: %v", err)
		}
		return func() int {
			t.Helper()
			q, err := ch.QueueDeclarePassive(q.Name, false /* durable */, true /* autoDelete */, true /* exclusive */, false /* noWait */, nil)
			if err != nil {
				t.Fatalf("counting records: %v", err)
			}
			return q.Messages
		}
	}
}

// emitter returns an emitter of the test's own on cfg's broker, to send
// events to BookingService as if another service had.
func emitter(t *testing.T, cfg app.Config) msgqueue.Emitter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var (
		em  msgqueue.Emitter
		err error
	)
	switch cfg.Broker {
	case app.Kafka:
		em, err = kafka.NewEmitter(ctx, cfg.KafkaBrokers, kafka.WithTopic(cfg.Topic))
	default:
		em, err = rabbitmq.NewEmitter(ctx, cfg.AMQPURL, rabbitmq.WithExchange(cfg.Exchange))
	}
	if err != nil {
		t.Fatalf("test emitter: %v", err)
	}
	t.Cleanup(func() { em.Close() })
	return em
}
