package bookingservice

import (
	"context"
	"fmt"
	"testing"

	"github.com/IBM/sarama"

	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/capstone/msgqueue/kafka"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// kafkaConsumeBacklog is how many event.booked each way of
// BenchmarkConsumeKafka drains.
const kafkaConsumeBacklog = 20_000

// BenchmarkConsumeKafka drains the same backlog of event.booked (sold by
// another instance, of 64 events, so spread over the topic's partitions)
// from Kafka as a consumer group, in one run: with raw sarama (a consumer
// group whose handler marks each record, no work: the ceiling) and
// through BookingService's group listener and SQL store, on SQLite and on
// PostgreSQL, two ways each: windows (ListenBatch, as the service is
// wired: a window of a partition's records in one transaction) and one
// record at a time (Listen: a transaction each). Rates count from the
// first record to the last, leaving out joining the group;
// <store>-windows-x-one-by-one compares the two ways of the service.
//
//	go test -run '^$' -bench BenchmarkConsumeKafka -benchtime 1x ./capstone/bookingservice/
func BenchmarkConsumeKafka(b *testing.B) {
	brokers := brokertest.Kafka(b).Brokers
	b.ReportMetric(consumeKafka(b, brokers, "raw", nil, false), "raw-msgs/s")
	for _, store := range []string{"sqlite", "postgres"} {
		rates := map[bool]float64{}
		for _, windows := range []bool{true, false} {
			s := openBenchStore(b, store)
			name := store + "-windows"
			if !windows {
				name = store + "-one-by-one"
			}
			rates[windows] = consumeKafka(b, brokers, name, s, windows)
			b.ReportMetric(rates[windows], name+"-msgs/s")
		}
		b.ReportMetric(rates[true]/rates[false], store+"-windows-x-one-by-one")
	}
}

// consumeKafka fills a topic of its own with kafkaConsumeBacklog
// event.booked and returns how many per second a consumer group drained,
// from the first record to the last: raw sarama when store is nil, else a
// BookingService over store through a kafka group listener, with windows
// or one record at a time.
func consumeKafka(b *testing.B, brokers []string, name string, store Store, windows bool) float64 {
	b.Helper()
	ctx := context.Background()
	topic, group := brokertest.Name(b, "consume-"+name), brokertest.Name(b, "group-"+name)
	events := 64
	l, err := kafka.NewGroupListener(ctx, brokers, group, []string{contracts.EventBookedName}, kafka.WithTopic(topic))
	if err != nil {
		b.Fatal(err)
	}
	em, err := kafka.NewEmitter(ctx, brokers, kafka.WithTopic(topic))
	if err != nil {
		b.Fatal(err)
	}
	fill(b, em, kafkaConsumeBacklog, events)

	c := newCountdown(kafkaConsumeBacklog)
	if store == nil {
		l.Close() // it made the topic; raw sarama reads it
		go consumeRaw(b, brokers, topic, group, c)
		if !c.wait() {
			b.Fatalf("%s drained %d of %d", name, c.n.Load(), kafkaConsumeBacklog)
		}
		return float64(kafkaConsumeBacklog-1) / c.steady().Seconds()
	}
	b.Cleanup(func() { l.Close() })
	for i := range events {
		saveShow(b, store, showID(i, events), contracts.MaxCapacity)
	}
	svc, err := New(store, &servicetest.Emitter{}, Options{Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { svc.Close() })
	h, hb := c.handlers(svc)
	if !windows {
		hb = nil
	}
	go func() { _ = l.ListenBatch(ctx, h, hb) }()
	if !c.wait() {
		b.Fatalf("%s drained %d of %d", name, c.n.Load(), kafkaConsumeBacklog)
	}
	return float64(kafkaConsumeBacklog-1) / c.steady().Seconds()
}

// consumeRaw consumes topic as group with sarama alone, marking each
// record, until c is done.
func consumeRaw(b *testing.B, brokers []string, topic, group string, c *countdown) {
	cfg := sarama.NewConfig()
	cfg.Version = kafka.ProtocolVersion
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cg, err := sarama.NewConsumerGroup(brokers, group, cfg)
	if err != nil {
		b.Error(err)
		return
	}
	defer cg.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-c.done
		cancel()
	}()
	for ctx.Err() == nil {
		if err := cg.Consume(ctx, []string{topic}, rawGroup{c}); err != nil && ctx.Err() == nil {
			b.Error(fmt.Errorf("raw sarama consumer group: %w", err))
			return
		}
	}
}

// rawGroup is raw sarama's group handler: mark each record, no work.
type rawGroup struct{ c *countdown }

func (rawGroup) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (rawGroup) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (g rawGroup) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			sess.MarkMessage(msg, "")
			g.c.hit()
		case <-sess.Context().Done():
			return nil
		}
	}
}
