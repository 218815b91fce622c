package bookingservice

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/capstone/msgqueue/kafka"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
	"github.com/IBM/sarama"
)

// replayBacklog is how long the log BenchmarkReplay reads is: about the
// log the issue that set the replay's goal measured (201,001 records), so
// that reading it, more than the consumers' start, takes the time.
const replayBacklog = 200_000

// BenchmarkReplay reads the same log of replayBacklog event.booked from
// Kafka two ways in one run: with raw sarama (a partition consumer per
// partition from the oldest offset, no work) and as BookingService over
// the memory store rebuilds its state from it (kafka.NewReplayListener
// with ListenBatch and HandleBatch, as the service is wired: every record
// decoded and applied). It reports each way's rate and the
// service's as a multiple of raw (x-raw), for two logs: one-event (every
// booking of one event, so all on one partition, read in order by one
// goroutine: the hardest case) and 64-events (bookings of 64 events,
// spread over the topic's partitions). Each log starts with its events'
// event.created, as a real one does.
//
//	go test -run '^$' -bench BenchmarkReplay -benchtime 1x ./capstone/bookingservice/
func BenchmarkReplay(b *testing.B) {
	for _, events := range []int{1, 64} {
		name := "one-event"
		if events > 1 {
			name = fmt.Sprintf("%d-events", events)
		}
		b.Run(name, func(b *testing.B) { benchmarkReplay(b, events) })
	}
}

func benchmarkReplay(b *testing.B, events int) {
	brokers := brokertest.Kafka(b).Brokers
	topic := brokertest.Name(b, "replay")
	em, err := kafka.NewEmitter(context.Background(), brokers, kafka.WithTopic(topic))
	if err != nil {
		b.Fatal(err)
	}
	at := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	for i := range events {
		ev := &contracts.EventCreated{ID: showID(i, events), Name: "Show", LocationID: "loc", Hall: "Main",
			Capacity: contracts.MaxCapacity, StartDate: at, EndDate: at.Add(2 * time.Hour)}
		if err := em.Emit(context.Background(), ev); err != nil {
			b.Fatal(err)
		}
	}
	fill(b, em, replayBacklog, events)
	total := int64(replayBacklog + events)

	raw := readRaw(b, brokers, topic, total)

	l, err := kafka.NewReplayListener(context.Background(), brokers,
		[]string{contracts.EventCreatedName, contracts.EventBookedName}, kafka.WithTopic(topic))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	svc, err := New(NewMemoryStore(), &servicetest.Emitter{}, Options{Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { svc.Close() })
	c := newCountdown(total)
	start := time.Now()
	go func() {
		h, hb := c.handlers(svc)
		_ = l.ListenBatch(context.Background(), h, hb)
	}()
	if !c.wait() {
		b.Fatalf("the replay applied %d of %d", c.n.Load(), total)
	}
	replay := newReading(total, start, c)
	b.ReportMetric(raw.rate(), "raw-msgs/s")
	b.ReportMetric(replay.rate(), "replay-msgs/s")
	b.ReportMetric(replay.rate()/raw.rate(), "replay-x-raw")
	b.ReportMetric(replay.readRate()/raw.readRate(), "read-x-raw")
	b.ReportMetric(ms(raw.start), "raw-start-ms")
	b.ReportMetric(ms(replay.start), "replay-start-ms")
}

// reading is how one way read a log: start is the time until its first
// record (sarama's consumer gathers partitions for 100 ms before its
// first fetch, whoever calls it), read the time from the first record
// to the last. rate is the one a user waits for, start included (a
// restarted service answers 503 until it has read the log); readRate
// leaves the start out, to compare the work per record alone.
type reading struct {
	records     int64
	start, read time.Duration
}

func newReading(records int64, began time.Time, c *countdown) reading {
	return reading{records: records, start: time.Duration(c.first.Load()) - began.Sub(c.base), read: c.steady()}
}

// rate is records per second from the start to the last record.
func (r reading) rate() float64 { return float64(r.records) / (r.start + r.read).Seconds() }

// readRate is records per second from the first record to the last.
func (r reading) readRate() float64 { return float64(r.records-1) / r.read.Seconds() }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// readRaw reads every record of the topic with sarama alone.
func readRaw(b testing.TB, brokers []string, topic string, total int64) reading {
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
	left := newCountdown(total)
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
		b.Errorf("raw sarama read %d of %d", left.n.Load(), total)
	}
	wg.Wait()
	return newReading(total, start, left)
}
