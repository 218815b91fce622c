package live

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/kafka"
	"example.com/myevents/contracts"
)

// Kafka watches the events topic and its dead-letter topic with clients
// of its own, beside the services: a plain consumer that belongs to no
// group and commits nothing reads every partition from the oldest record,
// so it sees what really reached the broker (which partition a key chose,
// at which offset the record was stored, which records were
// dead-lettered and why); a second client asks for the offsets and sends
// the poison.
type Kafka struct {
	title, topic, dlqTopic string

	reader     sarama.Client // fetches, which the broker may hold open
	consumer   sarama.Consumer
	partitions []sarama.PartitionConsumer
	wg         sync.WaitGroup

	client   sarama.Client // offsets and the poison: never behind a fetch
	producer sarama.SyncProducer
	poisoned int
	mu       sync.Mutex // guards poisoned

	closing sync.Once
	err     error
}

// WatchKafka starts reading topic and dlqTopic (both must exist) from
// their oldest records and hands every record to sink, one partition at a
// time, in log order per partition. title names the cluster on the page.
func WatchKafka(brokers []string, topic, dlqTopic, title string, sink func(Record)) (*Kafka, error) {
	cfg := sarama.NewConfig()
	cfg.Version = kafka.ProtocolVersion
	cfg.ClientID = "myevents-live"
	cfg.Metadata.AllowAutoTopicCreation = false
	cfg.Net.DialTimeout, cfg.Net.ReadTimeout, cfg.Net.WriteTimeout = 2*time.Second, 2*time.Second, 2*time.Second
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	// The partitioner the services use, so the poison lands on the
	// partition of the event it names.
	cfg.Producer.Partitioner = sarama.NewMurmur2Partitioner
	k := &Kafka{title: title, topic: topic, dlqTopic: dlqTopic}
	var err error
	if k.reader, err = sarama.NewClient(brokers, cfg); err != nil {
		return nil, fmt.Errorf("starting the live view's Kafka reader: %w", err)
	}
	if k.client, err = sarama.NewClient(brokers, cfg); err != nil {
		_ = k.reader.Close()
		return nil, fmt.Errorf("starting the live view's Kafka client: %w", err)
	}
	if k.consumer, err = sarama.NewConsumerFromClient(k.reader); err != nil {
		k.Close()
		return nil, fmt.Errorf("starting the live view's Kafka consumer: %w", err)
	}
	for _, t := range []string{topic, dlqTopic} {
		if err := k.read(t, sink); err != nil {
			k.Close()
			return nil, err
		}
	}
	return k, nil
}

// read starts one reader per partition of topic.
func (k *Kafka) read(topic string, sink func(Record)) error {
	ps, err := k.reader.Partitions(topic)
	if err != nil {
		return fmt.Errorf("listing the partitions of topic %s: %w", topic, err)
	}
	for _, p := range ps {
		pc, err := k.consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			return fmt.Errorf("reading topic %s partition %d: %w", topic, p, err)
		}
		k.partitions = append(k.partitions, pc)
		// AsyncClose (in Close) ends pc.Messages(), and this loop.
		k.wg.Go(func() {
			for msg := range pc.Messages() {
				sink(k.record(msg))
			}
		})
	}
	return nil
}

// record describes one Kafka record.
func (k *Kafka) record(msg *sarama.ConsumerMessage) Record {
	r := Record{Key: string(msg.Key), Topic: msg.Topic, Partition: msg.Partition, Offset: msg.Offset, Emitted: msg.Timestamp}
	if r.Emitted.IsZero() {
		r.Emitted = time.Now()
	}
	if msg.Topic != k.dlqTopic {
		name, ev, err := contracts.Unwrap(msg.Value)
		r.decode(name, ev, err)
		return r
	}
	h := map[string]string{}
	for _, rh := range msg.Headers {
		if rh != nil {
			h[string(rh.Key)] = string(rh.Value)
		}
	}
	p, _ := strconv.ParseInt(h[kafka.HeaderPartition], 10, 32)
	o, _ := strconv.ParseInt(h[kafka.HeaderOffset], 10, 64)
	r.DeadLetter = &DeadLetter{Reason: h[msgqueue.HeaderReason], Error: h[msgqueue.HeaderError], Partition: int32(p), Offset: o}
	r.Name = h[msgqueue.HeaderEventName]
	r.Summary = "dead-lettered copy: " + h[msgqueue.HeaderReason]
	return r
}

// View asks for the oldest and end offsets of every partition.
func (k *Kafka) View(context.Context) BrokerView {
	v := BrokerView{Kind: "kafka", Title: k.title, Up: true}
	for _, t := range []string{k.topic, k.dlqTopic} {
		tv, err := k.offsets(t)
		if err != nil {
			v.Up, v.Error = false, err.Error()
		}
		tv.DeadLetter = t == k.dlqTopic
		v.Topics = append(v.Topics, tv)
	}
	return v
}

func (k *Kafka) offsets(topic string) (TopicView, error) {
	tv := TopicView{Name: topic}
	ps, err := k.client.Partitions(topic)
	if err != nil {
		return tv, fmt.Errorf("listing the partitions of %s: %w", topic, err)
	}
	for _, p := range ps {
		oldest, err := k.client.GetOffset(topic, p, sarama.OffsetOldest)
		if err != nil {
			return tv, fmt.Errorf("asking for the offsets of %s partition %d: %w", topic, p, err)
		}
		end, err := k.client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return tv, fmt.Errorf("asking for the offsets of %s partition %d: %w", topic, p, err)
		}
		tv.Partitions = append(tv.Partitions, PartitionView{Partition: p, Oldest: oldest, End: end})
	}
	return tv, nil
}

// Waiting is the number of records in the events topic: a BookingService
// on the memory store replays them all at its start.
func (k *Kafka) Waiting(context.Context) (int64, error) {
	tv, err := k.offsets(k.topic)
	var n int64
	for _, p := range tv.Partitions {
		n += p.End - p.Oldest
	}
	return n, err
}

// Poison writes an event.booked of 5000 seats, more than a booking may
// have: it decodes, but breaks the limits of package contracts, so the
// listener dead-letters it without handing it to BookingService.
func (k *Kafka) Poison(_ context.Context, eventID string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.producer == nil {
		p, err := sarama.NewSyncProducerFromClient(k.client)
		if err != nil {
			return "", fmt.Errorf("starting the poison producer: %w", err)
		}
		k.producer = p
	}
	k.poisoned++
	value, key := poisonPayload(k.poisoned, eventID)
	env, err := json.Marshal(contracts.Envelope{EventName: contracts.EventBookedName, Payload: value})
	if err != nil {
		return "", err
	}
	p, o, err := k.producer.SendMessage(&sarama.ProducerMessage{Topic: k.topic, Key: sarama.StringEncoder(key), Value: sarama.ByteEncoder(env)})
	if err != nil {
		return "", fmt.Errorf("writing the poison record: %w", err)
	}
	return fmt.Sprintf("a poison record, event.booked of 5000 seats (a booking may have 1 to 1000), to partition %d offset %d", p, o), nil
}

// poisonPayload is the JSON of the n-th poison event.booked, and its key.
func poisonPayload(n int, eventID string) (json.RawMessage, string) {
	if eventID == "" {
		eventID = "NO-SUCH-EVENT"
	}
	b, _ := json.Marshal(map[string]any{ // plain values: cannot fail
		"id": fmt.Sprintf("POISON-%d", n), "event_id": eventID, "user_id": "mallory",
		"seats": 5000, "date": time.Now().UTC().Format(time.RFC3339),
	})
	return b, eventID
}

// Close stops reading and closes the clients; calling it again does
// nothing. Records already read are handed to the sink first, so the sink
// must not block for ever.
func (k *Kafka) Close() error {
	k.closing.Do(func() {
		for _, pc := range k.partitions {
			pc.AsyncClose()
		}
		k.wg.Wait()
		var errs []error
		if k.producer != nil {
			errs = append(errs, k.producer.Close())
		}
		if k.consumer != nil {
			errs = append(errs, k.consumer.Close())
		}
		for _, c := range []sarama.Client{k.client, k.reader} {
			if err := c.Close(); err != nil && !errors.Is(err, sarama.ErrClosedClient) {
				errs = append(errs, err)
			}
		}
		k.err = errors.Join(errs...)
	})
	return k.err
}
