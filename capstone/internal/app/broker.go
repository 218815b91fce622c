package app

import (
	"context"
	"fmt"
	"log/slog"

	"example.com/myevents/capstone/bookingservice"
	"example.com/myevents/capstone/internal/sqldb"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/kafka"
	"example.com/myevents/capstone/msgqueue/rabbitmq"
)

// health reports whether a dependency is up; nil means it is.
type health func(context.Context) error

// newEmitter connects the service's emitter to the configured broker. Its
// Health is the service's broker health: RabbitMQ, its connection is up;
// Kafka, the cluster answers a metadata request for the topic.
func newEmitter(ctx context.Context, cfg Config, log *slog.Logger) (msgqueue.Emitter, error) {
	var (
		em  msgqueue.Emitter
		err error
	)
	switch cfg.Broker {
	case AMQP:
		em, err = rabbitmq.NewEmitter(ctx, cfg.AMQPURL,
			rabbitmq.WithExchange(cfg.Exchange),
			rabbitmq.WithConnectionName(cfg.Service+" emitter "+cfg.Exchange),
			rabbitmq.WithLogger(log))
	case Kafka:
		em, err = kafka.NewEmitter(ctx, cfg.KafkaBrokers,
			kafka.WithTopic(cfg.Topic),
			kafka.WithClientID(cfg.Service),
			kafka.WithLogger(log))
	default:
		return nil, fmt.Errorf("unknown broker %q", cfg.Broker)
	}
	if err != nil {
		return nil, fmt.Errorf("starting the event emitter: %w", err)
	}
	return em, nil
}

// listener is BookingService's subscription, with what the wiring needs
// to know about it.
type listener struct {
	// Listener's Health reports a listener that cannot go on: RabbitMQ,
	// its connection is down; Kafka, a partition it cannot move past (the
	// emitter's Health covers the connection).
	msgqueue.Listener
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
		return &listener{Listener: l, describe: "queue " + cfg.Queue + " on exchange " + cfg.Exchange}, nil
	case cfg.Broker == Kafka && kind == sqldb.Memory:
		l, err := kafka.NewReplayListener(ctx, cfg.KafkaBrokers, names,
			kafka.WithTopic(cfg.Topic),
			kafka.WithClientID(cfg.Service),
			kafka.WithLogger(log))
		if err != nil {
			return nil, fmt.Errorf("preparing to replay the Kafka log: %w", err)
		}
		return &listener{Listener: l, caughtUp: l.CaughtUp(), describe: "replay of topic " + cfg.Topic + " from the oldest record"}, nil
	case cfg.Broker == Kafka:
		l, err := kafka.NewGroupListener(ctx, cfg.KafkaBrokers, cfg.Group, names,
			kafka.WithTopic(cfg.Topic),
			kafka.WithClientID(cfg.Service),
			kafka.WithLogger(log))
		if err != nil {
			return nil, fmt.Errorf("joining BookingService's consumer group: %w", err)
		}
		return &listener{Listener: l, describe: "consumer group " + cfg.Group + " on topic " + cfg.Topic}, nil
	}
	return nil, fmt.Errorf("unknown broker %q", cfg.Broker)
}
