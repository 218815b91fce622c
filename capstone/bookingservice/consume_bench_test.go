package bookingservice

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/rabbitmq"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// consumeBacklog is how many event.booked each way of BenchmarkConsume
// drains.
const consumeBacklog = 2000

// BenchmarkConsume drains the same backlog of event.booked (bookings sold
// by another instance, so each one is stored) from RabbitMQ two ways in one
// run: with the raw client (amqp091-go: prefetch 64, an ack per delivery,
// no work) and through BookingService's listener and store, on SQLite and
// on PostgreSQL. It reports each way's rate and, for the service, x-raw:
// its rate as a multiple of the raw client's in the same run.
//
//	go test -run '^$' -bench BenchmarkConsume -benchtime 1x ./capstone/bookingservice/
func BenchmarkConsume(b *testing.B) {
	url := brokertest.AMQP(b).URL
	raw := drainRate(b, url, "raw", nil)
	b.ReportMetric(raw, "raw-msgs/s")
	for _, store := range []string{"sqlite", "postgres"} {
		rate := drainRate(b, url, store, openBenchStore(b, store))
		b.ReportMetric(rate, store+"-msgs/s")
		b.ReportMetric(rate/raw, store+"-x-raw")
	}
}

// openBenchStore opens a new store of the kind named ("sqlite" or
// "postgres"), closed when the benchmark ends.
func openBenchStore(b *testing.B, kind string) Store {
	b.Helper()
	dsn := servicetest.SQLiteDSN(b)
	if kind == "postgres" {
		dsn = servicetest.PostgresDSN(b)
	}
	s, err := OpenStore(context.Background(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// drainRate fills a queue of its own with consumeBacklog event.booked and
// returns how many per second were drained: by the raw client when store
// is nil, else by a BookingService over store through rabbitmq.Listener,
// each window of deliveries applied in one transaction (ListenBatch).
func drainRate(b *testing.B, url, name string, store Store) float64 {
	b.Helper()
	ctx := context.Background()
	exchange, queue := brokertest.Name(b, "consume-"+name), brokertest.Name(b, "consume-"+name+"-q")
	names := []string{contracts.EventBookedName}
	l, err := rabbitmq.NewListener(ctx, url, queue, names, rabbitmq.WithExchange(exchange), rabbitmq.WithPrefetch(64), rabbitmq.WithBatchWait(300*time.Microsecond))
	if err != nil {
		b.Fatal(err)
	}
	admin := brokertest.AdminChannel(b, url) // closed after the deletion below
	b.Cleanup(func() {
		l.Close()
		if err := rabbitmq.DeleteTopology(admin, exchange, queue); err != nil {
			b.Errorf("cleanup: %v", err)
		}
	})
	em, err := rabbitmq.NewEmitter(ctx, url, rabbitmq.WithExchange(exchange))
	if err != nil {
		b.Fatal(err)
	}
	fill(b, em, consumeBacklog, 1)

	var svc *Service
	if store != nil {
		saveShow(b, store, "show", 1000)
		if svc, err = New(store, &servicetest.Emitter{}, Options{Logger: quiet()}); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { svc.Close() })
	}
	c := newCountdown(consumeBacklog)
	start := time.Now()
	if store == nil {
		go drainRaw(b, url, queue, c)
	} else {
		go func() {
			h, hb := c.handlers(svc)
			_ = l.ListenBatch(ctx, h, hb)
		}()
	}
	if !c.wait() {
		b.Fatalf("%s drained %d of %d", name, c.n.Load(), consumeBacklog)
	}
	rate := consumeBacklog / time.Since(start).Seconds()
	if store != nil {
		st := l.Stats()
		b.Logf("%s: %d windows applied whole, %d deliveries handled", name, st.Batches, st.Handled)
	}
	return rate
}

// handlers are svc's Handle and HandleBatch, counting on c: each call
// notes its start (begin), and its events once it returned nil.
func (c *countdown) handlers(svc *Service) (msgqueue.Handler, msgqueue.BatchHandler) {
	h := func(ctx context.Context, ev contracts.Event) error {
		c.begin()
		err := svc.Handle(ctx, ev)
		if err == nil {
			c.hit()
		}
		return err
	}
	hb := func(ctx context.Context, evs []contracts.Event) error {
		c.begin()
		err := svc.HandleBatch(ctx, evs)
		if err == nil {
			c.add(len(evs))
		}
		return err
	}
	return h, hb
}

// countdown closes done at the n-th hit, and keeps when the first and
// the last hit came.
type countdown struct {
	n, want     atomic.Int64
	base        time.Time    // with its monotonic reading
	first, last atomic.Int64 // time since base, in ns; first 0 until a hit
	done        chan struct{}
	once        sync.Once
}

func newCountdown(n int64) *countdown {
	c := &countdown{done: make(chan struct{}), base: time.Now()}
	c.want.Store(n)
	return c
}

// since is the time from base to now, at least 1 ns (0 means "no hit").
func (c *countdown) since() int64 { return max(1, int64(time.Since(c.base))) }

func (c *countdown) hit() { c.add(1) }

// begin notes that the first handler call started, if none did before: a
// window is counted once applied, and its work must count from its start.
func (c *countdown) begin() {
	if c.first.Load() == 0 {
		c.first.CompareAndSwap(0, c.since())
	}
}

// add counts n hits at once (a window applied together).
func (c *countdown) add(n int) {
	if c.first.Load() == 0 {
		c.first.CompareAndSwap(0, c.since())
	}
	if c.n.Add(int64(n)) >= c.want.Load() {
		c.once.Do(func() {
			c.last.Store(c.since())
			close(c.done)
		})
	}
}

// steady is the time from the first hit to the last, after wait.
func (c *countdown) steady() time.Duration {
	return time.Duration(c.last.Load() - c.first.Load())
}

// wait waits for the last hit, for five minutes at most.
func (c *countdown) wait() bool {
	select {
	case <-c.done:
		return true
	case <-time.After(5 * time.Minute):
		return false
	}
}

// fill emits a backlog with em from 32 goroutines, then closes em: n
// bookings of one seat, sold elsewhere, of the events showID(0, events)
// to showID(events-1, events) in turn.
func fill(b testing.TB, em msgqueue.Emitter, n, events int) {
	b.Helper()
	defer em.Close()
	var wg sync.WaitGroup
	at := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	for w := range 32 {
		wg.Go(func() {
			for i := w; i < n; i += 32 {
				ev := &contracts.EventBooked{ID: fmt.Sprintf("elsewhere-%06d", i), EventID: showID(i%events, events), UserID: "u", Seats: 1, Date: at}
				if err := em.Emit(context.Background(), ev); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// showID names the i-th of a backlog's events: "show" when there is one.
func showID(i, events int) string {
	if events == 1 {
		return "show"
	}
	return fmt.Sprintf("show-%02d", i)
}

// drainRaw consumes queue with amqp091-go alone, acking each delivery,
// until done.
func drainRaw(b *testing.B, url, queue string, c *countdown) {
	conn, err := amqp.Dial(url)
	if err != nil {
		b.Error(err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		b.Error(err)
		return
	}
	if err := ch.Qos(64, 0, false /* global */); err != nil {
		b.Error(err)
		return
	}
	ds, err := ch.Consume(queue, "", false /* auto-ack */, false /* exclusive */, false /* no-local */, false /* no-wait */, nil)
	if err != nil {
		b.Error(err)
		return
	}
	for {
		select {
		case d := <-ds:
			if err := d.Ack(false /* multiple */); err != nil {
				b.Error(err)
				return
			}
			c.hit()
		case <-c.done:
			return
		}
	}
}
