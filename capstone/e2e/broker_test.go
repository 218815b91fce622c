package e2e_test

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"
	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/capstone/internal/app"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/kafka"
	"example.com/myevents/capstone/msgqueue/rabbitmq"
)

// counter counts the records the broker holds for the test, independently
// of the services: on Kafka the topic's end offsets, on RabbitMQ a queue
// of the test's own bound to every event name.
type counter func() int

// countRecords starts counting; with RabbitMQ, only what is emitted from
// now on counts.
func countRecords(t *testing.T, cfg app.Config) counter {
	t.Helper()
	switch cfg.Broker {
	case app.Kafka:
		client, err := sarama.NewClient(cfg.KafkaBrokers, saramaConfig())
		if err != nil {
			t.Fatalf("counting records: %v", err)
		}
		t.Cleanup(func() { client.Close() })
		return func() int {
			t.Helper()
			if err := client.RefreshMetadata(cfg.Topic); err != nil {
				t.Fatalf("counting records: %v", err)
			}
			ps, err := client.Partitions(cfg.Topic)
			if err != nil {
				t.Fatalf("counting records: %v", err)
			}
			total := 0
			for _, p := range ps {
				end, err := client.GetOffset(cfg.Topic, p, sarama.OffsetNewest)
				if err != nil {
					t.Fatalf("counting records: %v", err)
				}
				total += int(end)
			}
			return total
		}
	default:
		ch, closeConn, err := openChannel(cfg.AMQPURL)
		if err != nil {
			t.Fatalf("counting records: %v", err)
		}
		t.Cleanup(func() { closeConn() })
		// The exchange may not exist yet; declaring it is idempotent.
		if err := ch.ExchangeDeclare(cfg.Exchange, amqp.ExchangeTopic, true /* durable */, false /* autoDelete */, false /* internal */, false /* noWait */, nil); err != nil {
			t.Fatalf("counting records: %v", err)
		}
		// Exclusive: the queue goes with the test's connection.
		q, err := ch.QueueDeclare("", false /* durable */, true /* autoDelete */, true /* exclusive */, false /* noWait */, nil)
		if err != nil {
			t.Fatalf("counting records: %v", err)
		}
		if err := ch.QueueBind(q.Name, "#", cfg.Exchange, false /* noWait */, nil); err != nil {
			t.Fatalf("counting records: %v", err)
		}
		return func() int {
			t.Helper()
			q, err := ch.QueueDeclarePassive(q.Name, false /* durable */, true /* autoDelete */, true /* exclusive */, false /* noWait */, nil)
			if err != nil {
				t.Fatalf("counting records: %v", err)
			}
			return q.Messages
		}
	}
}

// emitter returns an emitter of the test's own on cfg's broker, to send
// events to BookingService as if another service had.
func emitter(t *testing.T, cfg app.Config) msgqueue.Emitter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var (
		em  msgqueue.Emitter
		err error
	)
	switch cfg.Broker {
	case app.Kafka:
		em, err = kafka.NewEmitter(ctx, cfg.KafkaBrokers, kafka.WithTopic(cfg.Topic))
	default:
		em, err = rabbitmq.NewEmitter(ctx, cfg.AMQPURL, rabbitmq.WithExchange(cfg.Exchange))
	}
	if err != nil {
		t.Fatalf("test emitter: %v", err)
	}
	t.Cleanup(func() { em.Close() })
	return em
}

// saramaConfig is the configuration of the tests' own sarama clients.
func saramaConfig() *sarama.Config {
	sc := sarama.NewConfig()
	sc.Version = kafka.ProtocolVersion
	return sc
}

// openChannel dials RabbitMQ at url and opens a channel; closeConn closes
// the connection, and the channel with it.
func openChannel(url string) (ch *amqp.Channel, closeConn func() error, err error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return nil, nil, err
	}
	ch, err = conn.Channel()
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return ch, conn.Close, nil
}

// dropTopic deletes topic on cfg's Kafka and returns a function that
// creates it again, empty, with one partition.
func dropTopic(t *testing.T, cfg app.Config, topic string) (recreate func()) {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(cfg.KafkaBrokers, saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	if err := admin.DeleteTopic(topic); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); err != nil {
			t.Fatal(err)
		}
	}
}

// produceRaw writes one record to cfg's topic with a producer of the
// test's own that takes records up to 2 MB, keyed like the emitter's.
func produceRaw(t *testing.T, cfg app.Config, topic, key string, value []byte) {
	t.Helper()
	sc := saramaConfig()
	sc.Producer.Return.Successes = true
	sc.Producer.MaxMessageBytes = 2 << 20
	sc.Producer.Partitioner = sarama.NewMurmur2Partitioner
	p, err := sarama.NewSyncProducer(cfg.KafkaBrokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(key), Value: sarama.ByteEncoder(value)}); err != nil {
		t.Fatalf("producing a %d-byte record: %v", len(value), err)
	}
}

// rawEvent is a message a test sends BookingService with a client of its
// own, as any program on the broker could.
type rawEvent struct {
	key, name string // routing key (AMQP) or record key (Kafka); x-event-name or eventName
	body      string
	header    string // AMQP: x-event-name when it differs from name ("" for name)
}

// sendRaw sends evs to cfg's broker: AMQP with amqp091-go to the exchange,
// Kafka with sarama as envelopes keyed by key.
func sendRaw(t *testing.T, cfg app.Config, evs ...rawEvent) {
	t.Helper()
	if cfg.Broker == app.Kafka {
		for _, ev := range evs {
			produceRaw(t, cfg, cfg.Topic, ev.key, []byte(`{"eventName":"`+ev.name+`","payload":`+ev.body+`}`))
		}
		return
	}
	ch, closeConn, err := openChannel(cfg.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn()
	if err := ch.Confirm(false /* noWait */); err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		header := ev.header
		if header == "" {
			header = ev.name
		}
		dc, err := ch.PublishWithDeferredConfirm(cfg.Exchange, ev.name, true /* mandatory */, false /* immediate */, amqp.Publishing{
			Headers: amqp.Table{rabbitmq.HeaderEventName: header}, ContentType: "application/json",
			DeliveryMode: amqp.Persistent, MessageId: ev.key + "/" + ev.name, Body: []byte(ev.body),
		})
		if err != nil || !dc.Wait() {
			t.Fatalf("publishing %s: %v", ev.name, err)
		}
	}
}

// deadLetterReasons counts the dead letters of cfg's BookingService by
// their x-dlq-reason header.
func deadLetterReasons(t *testing.T, cfg app.Config) map[string]int {
	t.Helper()
	out := map[string]int{}
	if cfg.Broker == app.Kafka {
		client, err := sarama.NewClient(cfg.KafkaBrokers, saramaConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		consumer, err := sarama.NewConsumerFromClient(client)
		if err != nil {
			t.Fatal(err)
		}
		defer consumer.Close()
		dlq := cfg.Topic + ".dlq"
		end, err := client.GetOffset(dlq, 0, sarama.OffsetNewest)
		if err != nil || end == 0 {
			return out
		}
		pc, err := consumer.ConsumePartition(dlq, 0, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		for next := int64(0); next < end; {
			select {
			case m := <-pc.Messages():
				for _, h := range m.Headers {
					if string(h.Key) == msgqueue.HeaderReason {
						out[string(h.Value)]++
					}
				}
				next = m.Offset + 1
			case <-time.After(wait):
				t.Fatalf("reading %s: stuck before offset %d of %d", dlq, next, end)
			}
		}
		return out
	}
	ch, closeConn, err := openChannel(cfg.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn() // returns what was read unacknowledged
	for {
		d, ok, err := ch.Get(rabbitmq.DeadLetterQueue(cfg.Queue), false /* autoAck */)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		reason, _ := d.Headers[msgqueue.HeaderReason].(string)
		out[reason]++
	}
}
