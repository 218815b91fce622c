package bookingservice

import (
	"context"
	"sync"
	"testing"
	"time"

	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/capstone/msgqueue/kafka"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
	"github.com/IBM/sarama"
)

// replayBacklog is how long the log BenchmarkReplay reads is: long enough
// that reading it, not the consumers' start, is what takes the time.
const replayBacklog = 50_000

// BenchmarkReplay reads the same log of replayBacklog event.booked from
// Kafka two ways in one run: with raw sarama (a partition consumer per
// partition from the oldest offset, no work) and as BookingService over
// the memory store rebuilds its state from it (kafka.NewReplayListener,
// every record decoded and applied). It reports each way's rate and the
// service's as a multiple of raw (x-raw).
//
//	go test -run '^$' -bench BenchmarkReplay -benchtime 1x ./capstone/bookingservice/
func BenchmarkReplay(b *testing.B) {
	brokers := brokertest.Kafka(b).Brokers
	topic := brokertest.Name(b, "replay")
	em, err := kafka.NewEmitter(context.Background(), brokers, kafka.WithTopic(topic))
	if err != nil {
		b.Fatal(err)
	}
	fill(b, em, replayBacklog)

	raw := replayBacklog / readRaw(b, brokers, topic).Seconds()

	l, err := kafka.NewReplayListener(context.Background(), brokers, []string{contracts.EventBookedName}, kafka.WithTopic(topic))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	svc, err := New(NewMemoryStore(), &servicetest.Emitter{}, Options{Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { svc.Close() })
	c := newCountdown(replayBacklog)
	start := time.Now()
	go func() {
		_ = l.Listen(context.Background(), func(ctx context.Context, ev contracts.Event) error {
			err := svc.Handle(ctx, ev)
			if err == nil {
				c.hit()
			}
			return err
		})
	}()
	if !c.wait() {
		b.Fatalf("the replay applied %d of %d", c.n.Load(), replayBacklog)
	}
	replay := replayBacklog / time.Since(start).Seconds()
	b.ReportMetric(raw, "raw-msgs/s")
	b.ReportMetric(replay, "replay-msgs/s")
	b.ReportMetric(replay/raw, "replay-x-raw")
}

// readRaw reads every record of the topic with sarama alone and returns
// how long that took from the first ConsumePartition (not counting the
// consumers' close, which waits out a fetch).
func readRaw(b *testing.B, brokers []string, topic string) time.Duration {
	b.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = kafka.ProtocolVersion
	c, err := sarama.NewConsumer(brokers, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	parts, err := c.Partitions(topic)
	if err != nil {
		b.Fatal(err)
	}
	left := newCountdown(replayBacklog)
	var wg sync.WaitGroup
	start := time.Now()
	for _, p := range parts {
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			defer pc.Close()
			for {
				select {
				case <-pc.Messages():
					left.hit()
				case <-left.done:
					return
				}
			}
		})
	}
	if !left.wait() {
		b.Errorf("raw sarama read %d of %d", left.n.Load(), replayBacklog)
	}
	took := time.Since(start)
	wg.Wait()
	return took
}
