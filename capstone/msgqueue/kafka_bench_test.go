package msgqueue_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/IBM/sarama"

	"example.com/myevents/capstone/msgqueue/kafka"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

func init() {
	emitBenchmarks = append(emitBenchmarks,
		emitBenchmark{name: "kafka-raw", run: benchKafkaRaw},
		emitBenchmark{name: "kafka-raw-sync", run: benchKafkaRawSync},
		emitBenchmark{name: "kafka", run: benchKafka},
	)
}

// benchKafkaConfig is the guarantee every Kafka case gives: acks from all
// in-sync replicas, the idempotent producer (so one request in flight per
// connection), and the Java client's partitioner.
func benchKafkaConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = kafka.ProtocolVersion
	cfg.Metadata.AllowAutoTopicCreation = false
	kafka.SetProducerGuarantees(cfg)
	return cfg
}

// benchKafkaTopic creates a topic unique to this run with the transport's
// default partition count, and deletes it at the end.
func benchKafkaTopic(b *testing.B) (brokers []string, topic string) {
	b.Helper()
	k := brokertest.Kafka(b)
	topic = brokertest.Name(b, "bench")
	admin, err := sarama.NewClusterAdmin(k.Brokers, benchKafkaConfig())
	if err != nil {
		b.Fatalf("connecting to Kafka at %v: %v", k.Brokers, err)
	}
	err = admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: kafka.DefaultPartitions, ReplicationFactor: -1}, false)
	if err != nil {
		admin.Close()
		b.Fatalf("creating topic %s: %v", topic, err)
	}
	b.Cleanup(func() {
		if err := admin.DeleteTopic(topic); err != nil {
			b.Logf("deleting topic %s: %v", topic, err)
		}
		admin.Close()
	})
	return k.Brokers, topic
}

// rawRecord is the record every Kafka case writes for ev: what the
// transport's emitter writes.
func rawRecord(b *testing.B, topic string, ev contracts.Event) *sarama.ProducerMessage {
	value, err := contracts.Wrap(ev)
	if err != nil {
		b.Fatalf("wrapping %s: %v", ev.EventName(), err)
	}
	return &sarama.ProducerMessage{
		Topic: topic,
		Key:   sarama.StringEncoder(ev.PartitionKey()),
		Value: sarama.ByteEncoder(value),
	}
}

// benchKafkaRaw is sarama at its best for the guarantee: one AsyncProducer
// shared by every goroutine, each goroutine waiting for its own record's
// result, which a router hands back through the record's Metadata. Records
// of concurrent goroutines share produce requests.
func benchKafkaRaw(b *testing.B) {
	brokers, topic := benchKafkaTopic(b)
	p, err := sarama.NewAsyncProducer(brokers, benchKafkaConfig())
	if err != nil {
		b.Fatalf("starting the producer: %v", err)
	}
	// Hand each result back to the goroutine waiting for it.
	var routers sync.WaitGroup
	routers.Go(func() {
		for m := range p.Successes() {
			m.Metadata.(chan error) <- nil
		}
	})
	routers.Go(func() {
		for e := range p.Errors() {
			e.Msg.Metadata.(chan error) <- e.Err
		}
	})
	defer func() {
		p.AsyncClose()
		routers.Wait()
	}()

	runParallel(b, func(context.Context) error {
		msg := rawRecord(b, topic, benchEvent())
		result := make(chan error, 1)
		msg.Metadata = result
		p.Input() <- msg
		if err := <-result; err != nil {
			return fmt.Errorf("producing: %w", err)
		}
		return nil
	})
}

// benchKafkaRawSync is sarama's SyncProducer shared by every goroutine:
// SendMessage is safe for concurrent use and drives an AsyncProducer inside,
// so it batches concurrent callers the same way.
func benchKafkaRawSync(b *testing.B) {
	brokers, topic := benchKafkaTopic(b)
	p, err := sarama.NewSyncProducer(brokers, benchKafkaConfig())
	if err != nil {
		b.Fatalf("starting the producer: %v", err)
	}
	defer p.Close()

	runParallel(b, func(context.Context) error {
		if _, _, err := p.SendMessage(rawRecord(b, topic, benchEvent())); err != nil {
			return fmt.Errorf("producing: %w", err)
		}
		return nil
	})
}

// benchKafka is the transport's Emitter.
func benchKafka(b *testing.B) {
	brokers, topic := benchKafkaTopic(b)
	em, err := kafka.NewEmitter(context.Background(), brokers, kafka.WithTopic(topic), kafka.WithLogger(nil))
	if err != nil {
		b.Fatalf("starting the emitter: %v", err)
	}
	defer em.Close()

	runParallel(b, func(ctx context.Context) error {
		if err := em.Emit(ctx, benchEvent()); err != nil {
			return fmt.Errorf("emitting: %w", err)
		}
		return nil
	})
}
