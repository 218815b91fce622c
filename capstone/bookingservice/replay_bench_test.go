package bookingservice

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/capstone/msgqueue/kafka"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
	"github.com/IBM/sarama"
)

// BenchmarkReplay reads the same log of consumeBacklog event.booked from
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
	fillKafka(b, brokers, topic)

	raw := consumeBacklog / readRaw(b, brokers, topic).Seconds()

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
	var (
		n    atomic.Int64
		done = make(chan struct{})
		once sync.Once
	)
	start := time.Now()
	go func() {
		_ = l.Listen(context.Background(), func(ctx context.Context, ev contracts.Event) error {
			err := svc.Handle(ctx, ev)
			if err == nil && n.Add(1) == consumeBacklog {
				once.Do(func() { close(done) })
			}
			return err
		})
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("the replay applied %d of %d", n.Load(), consumeBacklog)
	}
	replay := consumeBacklog / time.Since(start).Seconds()
	b.ReportMetric(raw, "raw-msgs/s")
	b.ReportMetric(replay, "replay-msgs/s")
	b.ReportMetric(replay/raw, "replay-x-raw")
}

// fillKafka writes the log: bookings of one seat, sold elsewhere.
func fillKafka(b *testing.B, brokers []string, topic string) {
	b.Helper()
	em, err := kafka.NewEmitter(context.Background(), brokers, kafka.WithTopic(topic))
	if err != nil {
		b.Fatal(err)
	}
	defer em.Close()
	var wg sync.WaitGroup
	at := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	for w := range 32 {
		wg.Go(func() {
			for i := w; i < consumeBacklog; i += 32 {
				ev := &contracts.EventBooked{ID: fmt.Sprintf("elsewhere-%05d", i), EventID: "show", UserID: "u", Seats: 1, Date: at}
				if err := em.Emit(context.Background(), ev); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
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
	var (
		n    atomic.Int64
		done = make(chan struct{})
		once sync.Once
		wg   sync.WaitGroup
	)
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
					if n.Add(1) == consumeBacklog {
						once.Do(func() { close(done) })
					}
				case <-done:
					return
				}
			}
		})
	}
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Errorf("raw sarama read %d of %d", n.Load(), consumeBacklog)
	}
	took := time.Since(start)
	wg.Wait()
	return took
}
