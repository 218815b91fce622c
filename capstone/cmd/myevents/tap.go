package main

import (
	"fmt"
	"sync"

	"github.com/IBM/sarama"

	"example.com/myevents/capstone/msgqueue/kafka"
	"example.com/myevents/contracts"
)

// record is one event as it sits in the Kafka log.
type record struct {
	Name      string // the envelope's eventName
	Key       string // the record key: the event's partition key
	Partition int32
	Offset    int64
}

// String is how the demo shows a record.
func (r record) String() string {
	return fmt.Sprintf("   kafka: %-16s  key=%s  partition=%d offset=%d", r.Name, r.Key, r.Partition, r.Offset)
}

// tap reads the events topic with a plain consumer of its own, beside the
// services, so the demo shows what really reached the broker: which
// partition the key chose, and at which offset the record was stored. It
// belongs to no consumer group and commits nothing.
type tap struct {
	consumer   sarama.Consumer
	partitions []sarama.PartitionConsumer
	records    chan record
	wg         sync.WaitGroup
	closing    sync.Once
}

// openTap starts reading every partition of topic from its oldest record.
func openTap(brokers []string, topic string) (*tap, error) {
	cfg := sarama.NewConfig()
	cfg.Version = kafka.ProtocolVersion
	cfg.ClientID = "myevents-tap"
	consumer, err := sarama.NewConsumer(brokers, cfg)
	if err != nil {
		return nil, fmt.Errorf("starting the broker tap: %w", err)
	}
	partitions, err := consumer.Partitions(topic)
	if err != nil {
		consumer.Close()
		return nil, fmt.Errorf("listing the partitions of topic %s: %w", topic, err)
	}
	t := &tap{consumer: consumer, records: make(chan record, 64)}
	for _, p := range partitions {
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.close()
			return nil, fmt.Errorf("reading topic %s partition %d: %w", topic, p, err)
		}
		t.partitions = append(t.partitions, pc)
		// AsyncClose (in close) ends pc.Messages(), and this loop.
		t.wg.Go(func() {
			for msg := range pc.Messages() {
				name, _, _ := contracts.Unwrap(msg.Value) // the name is enough here
				t.records <- record{Name: name, Key: string(msg.Key), Partition: msg.Partition, Offset: msg.Offset}
			}
		})
	}
	return t, nil
}

// close stops reading; records is closed once every partition stopped.
// Calling it again does nothing.
func (t *tap) close() { t.closing.Do(t.stop) }

func (t *tap) stop() {
	// Drain what is still coming so no reader goroutine blocks on send.
	go func() {
		for range t.records {
		}
	}()
	for _, pc := range t.partitions {
		pc.AsyncClose()
	}
	t.wg.Wait()
	close(t.records)
	_ = t.consumer.Close() // nothing to do about an error at the end
}
