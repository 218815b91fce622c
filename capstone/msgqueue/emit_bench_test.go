package msgqueue_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"example.com/myevents/capstone/msgqueue/rabbitmq"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// TestMain lets brokertest stop the containers it may start. It is the only
// TestMain of package msgqueue_test: other files of the package must not
// declare one.
func TestMain(m *testing.M) { brokertest.Main(m) }

// emitBenchmark is one case of BenchmarkEmit. Files of this package register
// their cases by appending to emitBenchmarks from an init function:
//
//	func init() {
//		emitBenchmarks = append(emitBenchmarks,
//			emitBenchmark{name: "kafka-raw", run: benchKafkaRaw},
//			emitBenchmark{name: "kafka", run: benchKafka},
//		)
//	}
//
// One op is one event of about 200 bytes that the broker confirmed as
// stored (AMQP: a persistent message and its publisher confirm; Kafka: acks
// from all in-sync replicas). run sets up and measures one op with
// runParallel, so concurrent emitters are what is measured and every case
// runs the same number of goroutines.
type emitBenchmark struct {
	name string
	run  func(b *testing.B)
}

// emitBenchmarks holds the registered cases; BenchmarkEmit runs them sorted
// by name.
var emitBenchmarks []emitBenchmark

// emitParallelism is the b.SetParallelism every case uses: this many
// goroutines per GOMAXPROCS emit at once.
const emitParallelism = 32

// BenchmarkEmit compares the capstone emitters with their raw clients, for
// the same guarantee. Run it with:
//
//	go test -run '^$' -bench BenchmarkEmit -benchmem -count 5 ./capstone/msgqueue/
func BenchmarkEmit(b *testing.B) {
	cases := append([]emitBenchmark(nil), emitBenchmarks...)
	sort.Slice(cases, func(i, j int) bool { return cases[i].name < cases[j].name })
	for _, c := range cases {
		b.Run(c.name, c.run)
	}
}

// runParallel measures op with emitParallelism goroutines per GOMAXPROCS;
// the first error fails the case and ends that goroutine.
func runParallel(b *testing.B, op func(ctx context.Context) error) {
	b.SetParallelism(emitParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if err := op(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
}

// benchSeq numbers benchmark events across cases and goroutines.
var benchSeq atomic.Int64

// benchEvent returns the event every case emits: an EventBooked whose JSON
// is about 200 bytes, with a fresh ID. Use it from every case so they all
// measure the same payload.
func benchEvent() *contracts.EventBooked {
	n := benchSeq.Add(1)
	return &contracts.EventBooked{
		ID:      fmt.Sprintf("booking-%012d-7f3c9a2e-4b1d-4e8a-9c5f", n),
		EventID: fmt.Sprintf("event-%04d-1a2b3c4d-5e6f-4a7b-8c9d", n%100),
		UserID:  "user-00000042-0b9e-4d6c-a1f3-5d8e2c7b9a10",
		Seats:   2,
		Date:    time.Date(2026, time.March, 14, 19, 30, 0, 0, time.UTC),
	}
}

func init() {
	emitBenchmarks = append(emitBenchmarks,
		emitBenchmark{name: "amqp-raw", run: benchAMQPRaw},
		emitBenchmark{name: "amqp", run: benchAMQP},
		emitBenchmark{name: "amqp-channel-per-emit", run: benchAMQPChannelPerEmit},
	)
}

// benchTopology declares a durable topic exchange and a durable classic queue
// bound for event.booked, unique to this run, and deletes them at the end.
// It returns the broker URL and the exchange name.
func benchTopology(b *testing.B) (url, exchange string) {
	b.Helper()
	url = benchURL(b)
	exchange = brokertest.Name(b, "bench")
	queue := exchange + ".q"
	ch := brokertest.AdminChannel(b, url)
	err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic,
		true,  // durable
		false, // auto-delete
		false, // internal
		false, // no-wait
		nil,   // args
	)
	if err != nil {
		b.Fatalf("declaring exchange %s: %v", exchange, err)
	}
	_, err = ch.QueueDeclare(queue,
		true,  // durable
		false, // auto-delete
		false, // exclusive
		false, // no-wait
		nil,   // args
	)
	if err != nil {
		b.Fatalf("declaring queue %s: %v", queue, err)
	}
	if err := ch.QueueBind(queue, contracts.EventBookedName, exchange, false /* no-wait */, nil /* args */); err != nil {
		b.Fatalf("binding queue %s: %v", queue, err)
	}
	b.Cleanup(func() {
		_, _ = ch.QueueDelete(queue, false /* if-unused */, false /* if-empty */, false /* no-wait */)
		_ = ch.ExchangeDelete(exchange, false /* if-unused */, false /* no-wait */)
	})
	return url, exchange
}

// amqpURL caches the broker of the first AMQP case, so that brokertest logs
// its choice once rather than for every round of every case.
var amqpURL struct {
	sync.Mutex
	url string
}

// benchURL returns the RabbitMQ URL for the AMQP cases.
func benchURL(b *testing.B) string {
	amqpURL.Lock()
	defer amqpURL.Unlock()
	if amqpURL.url == "" {
		amqpURL.url = brokertest.AMQP(b).URL
	}
	return amqpURL.url
}

// rawPublishing is the message every AMQP case sends: what the capstone
// emitter sends for ev.
func rawPublishing(b *testing.B, ev contracts.Event) amqp.Publishing {
	body, err := json.Marshal(ev)
	if err != nil {
		b.Fatalf("encoding %s: %v", ev.EventName(), err)
	}
	return amqp.Publishing{
		Headers:      amqp.Table{"x-event-name": ev.EventName()},
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    rand.Text(),
		Body:         body,
	}
}

// benchAMQPRaw is amqp091-go at its best for the guarantee: one connection,
// one confirm-mode channel shared by every goroutine (concurrent Publish on
// one channel is safe), each goroutine waiting for its own deferred confirm,
// so the window of outstanding confirms is the number of goroutines.
func benchAMQPRaw(b *testing.B) {
	url, exchange := benchTopology(b)
	conn, err := amqp.Dial(url)
	if err != nil {
		b.Fatalf("connecting to RabbitMQ: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		b.Fatalf("opening a channel: %v", err)
	}
	if err := ch.Confirm(false /* no-wait */); err != nil {
		b.Fatalf("enabling publisher confirms: %v", err)
	}
	// A returned (unroutable) message would be a broken benchmark.
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	var returned atomic.Int64
	go func() {
		for range returns {
			returned.Add(1)
		}
	}()

	runParallel(b, func(context.Context) error {
		ev := benchEvent()
		dc, err := ch.PublishWithDeferredConfirm(exchange, ev.EventName(),
			true,  // mandatory
			false, // immediate
			rawPublishing(b, ev))
		if err != nil {
			return fmt.Errorf("publishing: %w", err)
		}
		if !dc.Wait() {
			return fmt.Errorf("the broker nacked message %d", dc.DeliveryTag)
		}
		return nil
	})
	if n := returned.Load(); n > 0 {
		b.Errorf("%d messages were returned as unroutable", n)
	}
}

// benchAMQPChannelPerEmit is the original chapter's approach (a new channel
// for every emit, because channels must not be shared), given the same
// guarantee: confirm mode on each channel, wait for the confirm, close.
func benchAMQPChannelPerEmit(b *testing.B) {
	url, exchange := benchTopology(b)
	conn, err := amqp.Dial(url)
	if err != nil {
		b.Fatalf("connecting to RabbitMQ: %v", err)
	}
	defer conn.Close()

	runParallel(b, func(context.Context) error {
		return publishOnNewChannel(conn, exchange, rawPublishing(b, benchEvent()))
	})
}

// publishOnNewChannel opens a channel, publishes one confirmed message and
// closes the channel.
func publishOnNewChannel(conn *amqp.Connection, exchange string, msg amqp.Publishing) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("opening a channel: %w", err)
	}
	defer ch.Close()
	return brokertest.PublishConfirmed(ch, exchange, contracts.EventBookedName, msg)
}

// benchAMQP is the capstone's emitter: the same guarantee, plus resending
// across reconnects and reporting unroutable events.
func benchAMQP(b *testing.B) {
	url, exchange := benchTopology(b)
	em, err := rabbitmq.NewEmitter(b.Context(), url, rabbitmq.WithExchange(exchange))
	if err != nil {
		b.Fatal(err)
	}
	defer em.Close()

	runParallel(b, func(ctx context.Context) error { return em.Emit(ctx, benchEvent()) })
}
