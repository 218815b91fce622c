package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/capstone/bookingservice"
	"example.com/myevents/capstone/internal/sqldb"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/kafka"
	"example.com/myevents/capstone/msgqueue/rabbitmq"
)

// health reports whether a dependency is up; nil means it is.
type health func(context.Context) error

// emitter connects the service's emitter to the configured broker and
// returns it with its health check. The check's closer (a Kafka client,
// or nil) is the caller's to close after the emitter.
func newEmitter(ctx context.Context, cfg Config, log *slog.Logger) (msgqueue.Emitter, health, func() error, error) {
	switch cfg.Broker {
	case AMQP:
		em, err := rabbitmq.NewEmitter(ctx, cfg.AMQPURL,
			rabbitmq.WithExchange(cfg.Exchange),
			rabbitmq.WithConnectionName(cfg.Service+" emitter "+cfg.Exchange),
			rabbitmq.WithLogger(log))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("starting the event emitter: %w", err)
		}
		check := func(context.Context) error {
			if !em.Connected() {
				return errors.New("the emitter is not connected to RabbitMQ (reconnecting)")
			}
			return nil
		}
		return em, check, nil, nil
	case Kafka:
		em, err := kafka.NewEmitter(ctx, cfg.KafkaBrokers,
			kafka.WithTopic(cfg.Topic),
			kafka.WithClientID(cfg.Service),
			kafka.WithLogger(log))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("starting the event emitter: %w", err)
		}
		// The Kafka emitter does not say whether it is connected; a
		// client of our own asks the cluster for the topic's metadata.
		probe, err := newKafkaProbe(cfg)
		if err != nil {
			_ = em.Close()
			return nil, nil, nil, err
		}
		return em, probe.check, probe.close, nil
	}
	return nil, nil, nil, fmt.Errorf("unknown broker %q", cfg.Broker)
}

// listener is BookingService's subscription, with what the wiring needs
// to know about it.
type listener struct {
	msgqueue.Listener
	// health reports a listener that cannot go on: RabbitMQ, its
	// connection is down; Kafka, a partition it cannot move past (the
	// emitter's check covers the connection).
	health health
	// caughtUp is closed once a replaying listener has processed the
	// whole log as it was at start-up; nil when the service need not
	// wait (its state is in a SQL store).
	caughtUp <-chan struct{}
	// describe says how the service listens, for the start-up log.
	describe string
}

// newBookingListener subscribes BookingService to every event it handles
// (bookingservice.Names), declaring everything at start-up, before
// EventService can emit:
//
//   - RabbitMQ: the durable queue cfg.Queue bound once per name, with its
//     dead-letter queue; events emitted while the service is down wait
//     there.
//   - Kafka with a SQL store: the consumer group cfg.Group; committed
//     offsets make a restart resume where it stopped.
//   - Kafka with the memory store: no group; every start replays the topic
//     from the oldest record and rebuilds the state (event sourcing).
func newBookingListener(ctx context.Context, cfg Config, log *slog.Logger) (*listener, error) {
	names := bookingservice.Names()
	kind, err := sqldb.Parse(cfg.DB)
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.Broker == AMQP:
		l, err := rabbitmq.NewListener(ctx, cfg.AMQPURL, cfg.Queue, names,
			rabbitmq.WithExchange(cfg.Exchange),
			rabbitmq.WithConnectionName(cfg.Service+" listener "+cfg.Queue),
			rabbitmq.WithLogger(log))
		if err != nil {
			return nil, fmt.Errorf("declaring BookingService's queue: %w", err)
		}
		check := func(context.Context) error {
			if !l.Connected() {
				return errors.New("the listener is not connected to RabbitMQ (reconnecting)")
			}
			return nil
		}
		return &listener{Listener: l, health: check, describe: "queue " + cfg.Queue + " on exchange " + cfg.Exchange}, nil
	case cfg.Broker == Kafka && kind == sqldb.Memory:
		l, err := kafka.NewReplayListener(ctx, cfg.KafkaBrokers,
			kafka.WithTopic(cfg.Topic),
			kafka.WithEvents(names...),
			kafka.WithClientID(cfg.Service),
			kafka.WithLogger(log))
		if err != nil {
			return nil, fmt.Errorf("preparing to replay the Kafka log: %w", err)
		}
		return &listener{Listener: l, health: stalled(l), caughtUp: l.CaughtUp(), describe: "replay of topic " + cfg.Topic + " from the oldest record"}, nil
	case cfg.Broker == Kafka:
		l, err := kafka.NewGroupListener(ctx, cfg.KafkaBrokers, cfg.Group,
			kafka.WithTopic(cfg.Topic),
			kafka.WithEvents(names...),
			kafka.WithClientID(cfg.Service),
			kafka.WithLogger(log))
		if err != nil {
			return nil, fmt.Errorf("joining BookingService's consumer group: %w", err)
		}
		return &listener{Listener: l, health: stalled(l), describe: "consumer group " + cfg.Group + " on topic " + cfg.Topic}, nil
	}
	return nil, fmt.Errorf("unknown broker %q", cfg.Broker)
}

// stalled is the health of a Kafka listener: a partition it cannot move
// past (a record it can neither handle nor dead-letter) makes the service
// unhealthy, with the reason.
func stalled(l *kafka.Listener) health {
	return func(context.Context) error {
		if err := l.Stalled(); err != nil {
			return fmt.Errorf("the Kafka listener is stuck: %w", err)
		}
		return nil
	}
}

// kafkaProbe answers the health check of a Kafka-backed service.
type kafkaProbe struct {
	client sarama.Client
	topic  string
}

// newKafkaProbe opens a client that gives up quickly, for health checks.
func newKafkaProbe(cfg Config) (*kafkaProbe, error) {
	sc := sarama.NewConfig()
	sc.Version = kafka.ProtocolVersion
	sc.ClientID = cfg.Service + "-health"
	sc.Metadata.Retry.Max = 0
	sc.Metadata.Full = false
	sc.Net.DialTimeout = 2 * time.Second
	sc.Net.ReadTimeout = 2 * time.Second
	sc.Net.WriteTimeout = 2 * time.Second
	client, err := sarama.NewClient(cfg.KafkaBrokers, sc)
	if err != nil {
		return nil, fmt.Errorf("connecting the Kafka health check to %v: %w", cfg.KafkaBrokers, err)
	}
	return &kafkaProbe{client: client, topic: cfg.Topic}, nil
}

// check asks the cluster for the topic's metadata.
func (p *kafkaProbe) check(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- p.client.RefreshMetadata(p.topic) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("the Kafka cluster does not answer: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("the Kafka cluster does not answer: %w", ctx.Err())
	}
}

func (p *kafkaProbe) close() error {
	if err := p.client.Close(); err != nil && !errors.Is(err, sarama.ErrClosedClient) {
		return fmt.Errorf("closing the Kafka health client: %w", err)
	}
	return nil
}

// both combines two health checks; either may be nil.
func both(a, b health) health {
	return func(ctx context.Context) error {
		for _, h := range []health{a, b} {
			if h == nil {
				continue
			}
			if err := h(ctx); err != nil {
				return err
			}
		}
		return nil
	}
}
