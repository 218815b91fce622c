package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/IBM/sarama"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
)

// Emitter writes events to the topic. It is safe for concurrent use, and
// concurrent Emit calls share produce requests.
type Emitter struct {
	client   sarama.Client
	producer *producer
	topic    string
	logger   *slog.Logger
	probe    *probe // answers Health
}

var _ msgqueue.Emitter = (*Emitter)(nil)

// NewEmitter connects to the brokers and creates the topic if it does not
// exist. Options: WithTopic, WithPartitions, WithReplicationFactor,
// WithRetention, WithLogger, WithClientID.
func NewEmitter(ctx context.Context, brokers []string, opts ...Option) (*Emitter, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	client, err := connect(ctx, brokers, producerConfig(ctx, o))
	if err != nil {
		return nil, err
	}
	if err := ensureTopic(ctx, client, o, o.topic, o.partitions); err != nil {
		client.Close()
		return nil, err
	}
	p, err := newProducer(client)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("starting the Kafka producer: %w", err)
	}
	o.logger.Debug("kafka emitter ready", "brokers", strings.Join(brokers, ","), "topic", o.topic)
	return &Emitter{client: client, producer: p, topic: o.topic, logger: o.logger, probe: newProbe(brokers, o)}, nil
}

// Emit validates ev, wraps it in the envelope and writes it with its
// partition key as the record key. It returns nil only once all in-sync
// replicas have the record. When ctx ends first it returns ctx's error, and
// the record may or may not be written.
func (e *Emitter) Emit(ctx context.Context, ev contracts.Event) error {
	name := ev.EventName()
	if err := ev.Validate(); err != nil {
		return fmt.Errorf("emitting %s: %w", name, err)
	}
	value, err := contracts.Wrap(ev)
	if err != nil {
		return fmt.Errorf("emitting %s: %w", name, err)
	}
	key := ev.PartitionKey()
	if err := msgqueue.CheckSize(msgqueue.RecordSize(key, value)); err != nil {
		return fmt.Errorf("emitting %s: %w", name, err)
	}
	err = e.producer.send(ctx, &sarama.ProducerMessage{
		Topic: e.topic,
		Key:   sarama.StringEncoder(key),
		Value: sarama.ByteEncoder(value),
	})
	if err != nil {
		return fmt.Errorf("emitting %s to Kafka topic %s: %w", name, e.topic, err)
	}
	return nil
}

// Close waits until every event already handed to Emit is acknowledged or
// failed, then disconnects. Emit after Close returns msgqueue.ErrClosed.
func (e *Emitter) Close() error {
	e.producer.close()
	err := e.probe.close()
	if cerr := e.client.Close(); cerr != nil && !errors.Is(cerr, sarama.ErrClosedClient) {
		err = errors.Join(err, fmt.Errorf("closing the Kafka client: %w", cerr))
	}
	return err
}
