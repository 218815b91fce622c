// Command 09-partition-key-envelope shows why one Kafka topic per event name
// loses the order of events about the same entity, and how one topic, the
// event's partition key as the record key and a {eventName, payload}
// envelope keep it.
//
// Part 1 is the pitfall: event.created and event.booked go to two topics,
// and a consumer that reads the topics independently processes the booking
// before the event it books. Part 2 is the fix: every event goes to one
// topic, keyed by PartitionKey(), wrapped in an envelope; the consumer reads
// each partition in order and decodes the payload by event name with
// mapstructure. A malformed envelope and an unknown event name are reported
// for that record only; the records after them are still decoded. Part 3
// shows the original chapter's first bug on the wire: every field of its
// "event created" struct tagged json:"id", so that the event travels as {}
// and every reader decodes it as empty, without an error anywhere.
//
// Usage:
//
//	go run ./labs/09-partition-key-envelope [-brokers 127.0.0.1:9092] [-topic lab09] [-keep]
//
// -topic is the prefix of the three topics the lab creates, empty, at the
// start: lab09.event.created and lab09.event.booked (part 1) and
// lab09.events (part 2). They are deleted at the end unless -keep is given,
// also when Ctrl-C stops the run.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/go-viper/mapstructure/v2"

	"example.com/myevents/contracts"
	"example.com/myevents/labs/labkit"
)

// defaultBrokers is the local development Kafka.
const defaultBrokers = "127.0.0.1:9092"

// eventsPartitions is the partition count of the one topic of part 2.
const eventsPartitions = 2

// readTimeout bounds how long the lab waits for a record it knows is there.
const readTimeout = 10 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	interrupted := ctx.Err() != nil // read it before stop, which cancels ctx as well
	stop()
	switch {
	case err != nil && (interrupted || errors.Is(err, context.Canceled)):
		// Ctrl-C: run has closed what it opened. 130 is what a shell
		// reports for a program ended by Ctrl-C (128 + SIGINT).
		fmt.Fprintln(os.Stderr, "interrupted: stopped cleanly")
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("09-partition-key-envelope", flag.ContinueOnError)
	brokerList := fs.String("brokers", "", "Kafka bootstrap brokers, comma-separated (default $KAFKA_BROKERS, else "+defaultBrokers+")")
	prefix := fs.String("topic", "lab09", "prefix of the three topics the lab creates empty and deletes at the end: <topic>.event.created, <topic>.event.booked, <topic>.events")
	keep := fs.Bool("keep", false, "keep the topics at the end instead of deleting them, to look at them")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; see -h", fs.Args())
	}
	// The environment supplies the brokers unless -brokers does.
	if *brokerList == "" {
		*brokerList = labkit.EnvOr("KAFKA_BROKERS", defaultBrokers)
	}
	brokers := labkit.SplitBrokers(*brokerList)
	if len(brokers) == 0 {
		return errors.New("no Kafka broker given: pass -brokers host:port or set KAFKA_BROKERS")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	// Connect. One client serves the admin, the producer and the consumer.
	client, err := labkit.ConnectKafka(ctx, brokers, newConfig())
	if err != nil {
		return err
	}
	defer client.Close()
	fmt.Fprintf(out, "brokers: %s\n", strings.Join(brokers, ","))

	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		return fmt.Errorf("creating the Kafka admin: %w", err)
	}
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		return fmt.Errorf("creating the Kafka producer: %w", err)
	}
	defer producer.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return fmt.Errorf("creating the Kafka consumer: %w", err)
	}
	defer consumer.Close()

	createdTopic := *prefix + "." + contracts.EventCreatedName
	bookedTopic := *prefix + "." + contracts.EventBookedName
	eventsTopic := *prefix + ".events"

	// Declare. Start from empty topics so that every run prints the same
	// offsets, and delete them again at the end.
	defer func() {
		if *keep {
			return
		}
		for _, t := range []string{createdTopic, bookedTopic, eventsTopic} {
			if err := admin.DeleteTopic(t); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
				log.Warn("deleting topic", "topic", t, "err", err)
			}
		}
	}()
	for _, t := range []struct {
		name       string
		partitions int32
	}{{createdTopic, 1}, {bookedTopic, 1}, {eventsTopic, eventsPartitions}} {
		if err := recreateTopic(ctx, admin, t.name, t.partitions); err != nil {
			return err
		}
	}
	if err := client.RefreshMetadata(createdTopic, bookedTopic, eventsTopic); err != nil {
		return fmt.Errorf("reading metadata of the lab topics: %w", err)
	}

	at := time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)
	loc1 := &contracts.LocationCreated{ID: "loc-1", Name: "Stadthalle", Address: "Marktplatz 1", Country: "DE",
		OpenTime: 8, CloseTime: 23, Halls: []contracts.Hall{{Name: "Main", Capacity: 500}}}
	ev1 := &contracts.EventCreated{ID: "ev-1", Name: "Opera night", LocationID: "loc-1", Hall: "Main",
		Capacity: 500, StartDate: at, EndDate: at.Add(3 * time.Hour)}
	bk1 := &contracts.EventBooked{ID: "bk-1", EventID: "ev-1", UserID: "u-1", Seats: 2, Date: at.Add(-48 * time.Hour)}

	// ---- Part 1: the pitfall, one topic per event name. ----
	fmt.Fprintln(out, "part 1, the pitfall: one topic per event name, no record key")

	// Publish. The event is created first, then booked: that is the order
	// in which they happened, and the order the producer sends them.
	for _, ev := range []contracts.Event{ev1, bk1} {
		body, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encoding %s: %w", ev.EventName(), err)
		}
		topic := *prefix + "." + ev.EventName()
		p, off, err := producer.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(body)})
		if err != nil {
			return fmt.Errorf("producing %s to %s: %w", ev.EventName(), topic, err)
		}
		fmt.Fprintf(out, "produced %s -> %s partition %d offset %d\n", describe(ev), topic, p, off)
	}

	// Consume. A consumer of two topics runs one partition consumer per
	// topic. Kafka orders records within one partition only; between the
	// two there is no order at all, so whichever fetch answers first is
	// processed first. This run reads the booking topic first on purpose,
	// to show deterministically one order a real consumer may see.
	fmt.Fprintf(out, "this run reads %s first, on purpose: nothing orders one topic against another\n", bookedTopic)
	known := map[string]int{} // event ID -> capacity: BookingService's own copy
	early := 0                // bookings processed before their event
	for _, topic := range []string{bookedTopic, createdTopic} {
		msgs, err := readPartition(ctx, client, consumer, topic, 0)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			name := strings.TrimPrefix(m.Topic, *prefix+".")
			ev, err := contracts.Decode(name, m.Value)
			if err != nil {
				return fmt.Errorf("decoding %s from %s: %w", name, m.Topic, err)
			}
			if bookingTooEarly(known, ev) {
				early++
			}
			fmt.Fprintf(out, "  %s\n", apply(known, map[string]int{}, ev))
		}
	}
	fmt.Fprintf(out, "bookings processed before their event: %d\n", early)

	// ---- Part 2: the fix, one topic, key = PartitionKey(), envelope. ----
	fmt.Fprintf(out, "part 2, the fix: one topic %s, key = PartitionKey(), value = {eventName, payload}\n", eventsTopic)

	loc2 := &contracts.LocationCreated{ID: "loc-2", Name: "Hafenbühne", Address: "Kai 7", Country: "DE",
		OpenTime: 10, CloseTime: 22, Halls: []contracts.Hall{{Name: "Deck", Capacity: 120}}}
	ev2 := &contracts.EventCreated{ID: "ev-2", Name: "Jazz on the pier", LocationID: "loc-2", Hall: "Deck",
		Capacity: 120, StartDate: at.Add(24 * time.Hour), EndDate: at.Add(26 * time.Hour)}
	bk2 := &contracts.EventBooked{ID: "bk-2", EventID: "ev-2", UserID: "u-2", Seats: 4, Date: at.Add(-47 * time.Hour)}
	bk3 := &contracts.EventBooked{ID: "bk-3", EventID: "ev-1", UserID: "u-3", Seats: 1, Date: at.Add(-46 * time.Hour)}
	bk4 := &contracts.EventBooked{ID: "bk-4", EventID: "ev-2", UserID: "u-1", Seats: 3, Date: at.Add(-45 * time.Hour)}

	// Publish. Every event about one entity carries that entity's ID as
	// its key, so the hash partitioner sends them all to one partition,
	// where Kafka keeps them in the order they were produced.
	for _, ev := range []contracts.Event{loc1, ev1, bk1, loc2, ev2, bk2, bk3} {
		p, off, err := publish(producer, eventsTopic, ev)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "produced %s key %s -> partition %d offset %d\n", describe(ev), ev.PartitionKey(), p, off)
	}
	// Two broken records from other producers, then one more good one:
	// the consumer must report the broken ones and carry on.
	for _, bad := range []struct{ what, value string }{
		{"a malformed envelope", `{"eventName": "event.booked", "payload": `},
		{"an unknown event name event.cancelled", `{"eventName": "event.cancelled", "payload": {"id": "ev-2"}}`},
	} {
		p, off, err := producer.SendMessage(&sarama.ProducerMessage{Topic: eventsTopic,
			Key: sarama.StringEncoder("ev-2"), Value: sarama.StringEncoder(bad.value)})
		if err != nil {
			return fmt.Errorf("producing %s: %w", bad.what, err)
		}
		fmt.Fprintf(out, "produced %s key ev-2 -> partition %d offset %d\n", bad.what, p, off)
	}
	p, off, err := publish(producer, eventsTopic, bk4)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "produced %s key %s -> partition %d offset %d\n", describe(bk4), bk4.PartitionKey(), p, off)

	// Consume. Read every partition from the oldest offset to the end.
	// Within a partition the order is the produce order; between
	// partitions there is none, which is fine: no event needs an event
	// with another key to be processed first (event.created carries the
	// hall capacity, so a booking never needs the location).
	known = map[string]int{}
	booked := map[string]int{}
	early = 0
	var good, agree int
	for p := range int32(eventsPartitions) {
		msgs, err := readPartition(ctx, client, consumer, eventsTopic, p)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "partition %d:\n", p)
		for _, m := range msgs {
			// decodeEnvelope (this lab's exercise: solution.go; the
			// template is exercise.go) reads the envelope and the payload.
			ev, err := decodeEnvelope(m.Value)
			if err != nil {
				// A broken record is an error for that record only:
				// report it (a real service would park it on an error
				// topic) and go on with the next one.
				fmt.Fprintf(out, "  offset %d key %s: error: %v\n", m.Offset, m.Key, err)
				continue
			}
			if bookingTooEarly(known, ev) {
				early++
			}
			fmt.Fprintf(out, "  offset %d key %s: %s\n", m.Offset, m.Key, apply(known, booked, ev))
			// The lab's envelope is the contracts wire format: the
			// raw-JSON decoder of the capstone must read the same event.
			good++
			if _, same, err := contracts.Unwrap(m.Value); err == nil && equalJSON(same, ev) {
				agree++
			}
		}
	}
	fmt.Fprintf(out, "bookings processed before their event: %d\n", early)
	fmt.Fprintf(out, "contracts.Unwrap decodes the same %d of %d good records\n", agree, good)

	// Observe what the decoder needs, on the payload of event.created.
	payload := map[string]any{}
	if err := roundTrip(ev1, &payload); err != nil {
		return err
	}
	var noHook contracts.EventCreated
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{TagName: "json", Result: &noHook})
	if err != nil {
		return fmt.Errorf("building a decoder: %w", err)
	}
	fmt.Fprintf(out, "mapstructure without a time hook: %s\n", oneLine(dec.Decode(payload)))
	_, err = mapstructure.NewDecoder(&mapstructure.DecoderConfig{TagName: "json", Result: noHook})
	fmt.Fprintf(out, "mapstructure with Result not a pointer: %s\n", oneLine(err))

	// ---- Part 3: the chapter's bug, every field tagged json:"id". ----
	fmt.Fprintln(out, `part 3, the chapter's bug: every field of event.created tagged json:"id"`)

	// Encode ev-1 with those tags. encoding/json drops every field whose
	// name another field at the same level also claims: here all of them.
	wrong := reflect.New(wronglyTagged())
	wrong.Elem().Set(reflect.ValueOf(*ev1).Convert(wronglyTagged()))
	body, err := json.Marshal(wrong.Interface())
	if err != nil {
		return fmt.Errorf("encoding ev-1 with the wrong tags: %w", err)
	}
	fmt.Fprintf(out, "  json.Marshal of ev-1 with those tags: %s (%s)\n", body, oneLine(err))

	// Publish it as such a producer would, in the envelope, keyed by the
	// event ID, and read it back from the broker.
	value, err := json.Marshal(struct {
		EventName string          `json:"eventName"`
		Payload   json.RawMessage `json:"payload"`
	}{contracts.EventCreatedName, body})
	if err != nil {
		return fmt.Errorf("encoding the envelope: %w", err)
	}
	p, off, err = producer.SendMessage(&sarama.ProducerMessage{Topic: eventsTopic,
		Key: sarama.StringEncoder(ev1.ID), Value: sarama.ByteEncoder(value)})
	if err != nil {
		return fmt.Errorf("producing the wrongly tagged event.created: %w", err)
	}
	fmt.Fprintf(out, "  produced it key %s -> partition %d offset %d\n", ev1.ID, p, off)
	msgs, err := readPartition(ctx, client, consumer, eventsTopic, p)
	if err != nil {
		return err
	}
	if len(msgs) == 0 || msgs[len(msgs)-1].Offset != off {
		return fmt.Errorf("reading %s/%d: the record at offset %d is not there", eventsTopic, p, off)
	}
	read := msgs[len(msgs)-1].Value
	fmt.Fprintf(out, "  a consumer reads %s\n", read)

	// Decode it as a reader with the same struct would, and the correct
	// payload too: the tags drop every field on the way in as well.
	var env struct {
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(read, &env); err != nil {
		return fmt.Errorf("reading the envelope back: %w", err)
	}
	got := reflect.New(wronglyTagged())
	err = json.Unmarshal(env.Payload, got.Interface())
	fmt.Fprintf(out, "  a reader with the same struct decodes it: %s (%s)\n", describeWrong(got), oneLine(err))
	correct, err := json.Marshal(ev1)
	if err != nil {
		return fmt.Errorf("encoding ev-1: %w", err)
	}
	got = reflect.New(wronglyTagged())
	err = json.Unmarshal(correct, got.Interface())
	fmt.Fprintf(out, "  and decodes the correct payload no better: %s (%s)\n", describeWrong(got), oneLine(err))

	// The fix: one snake_case name per field (contracts), and a decoder
	// that validates, so an empty event is refused instead of stored.
	_, err = decodeEnvelope(read)
	fmt.Fprintf(out, "  decodeEnvelope with the contract's tags and Validate: %s\n", oneLine(err))
	return nil
}

// wronglyTagged is the original chapter's "event created" struct: the
// fields of contracts.EventCreated, every one tagged json:"id". Written out
// in Go source, go vet refuses it ("struct field Name repeats json tag "id"
// also at ..."), which is how a project catches this bug before it ships;
// the lab builds the type at run time to show what it does on the wire.
func wronglyTagged() reflect.Type {
	right := reflect.TypeFor[contracts.EventCreated]()
	fields := make([]reflect.StructField, right.NumField())
	for i := range fields {
		fields[i] = right.Field(i)
		fields[i].Tag = `json:"id"`
	}
	return reflect.StructOf(fields)
}

// describeWrong prints the main fields of a decoded wronglyTagged value
// (a pointer to one).
func describeWrong(v reflect.Value) string {
	e := v.Elem().Convert(reflect.TypeFor[contracts.EventCreated]()).Interface().(contracts.EventCreated)
	return fmt.Sprintf("id %q, name %q, location_id %q, capacity %d", e.ID, e.Name, e.LocationID, e.Capacity)
}

// publish produces ev to topic, wrapped in an envelope (encodeEnvelope, the
// exercise's first part), with its partition key as the record key. It
// returns where the record landed.
func publish(producer sarama.SyncProducer, topic string, ev contracts.Event) (int32, int64, error) {
	value, err := encodeEnvelope(ev)
	if err != nil {
		return 0, 0, err
	}
	// The record key is the entity ID. The partitioner hashes it, so every
	// event about that entity lands on the same partition.
	p, off, err := producer.SendMessage(&sarama.ProducerMessage{
		Topic: topic,
		Key:   sarama.StringEncoder(ev.PartitionKey()),
		Value: sarama.ByteEncoder(value),
	})
	if err != nil {
		return 0, 0, fmt.Errorf("producing %s to %s: %w", ev.EventName(), topic, err)
	}
	return p, off, nil
}

// apply updates BookingService's copy of the events (event ID -> capacity)
// and the seats booked per event, and says what happened.
func apply(known, booked map[string]int, ev contracts.Event) string {
	switch e := ev.(type) {
	case *contracts.LocationCreated:
		return fmt.Sprintf("%s: stored", describe(e))
	case *contracts.EventCreated:
		known[e.ID] = e.Capacity
		return fmt.Sprintf("%s: stored, capacity %d", describe(e), e.Capacity)
	case *contracts.EventBooked:
		capacity, ok := known[e.EventID]
		if !ok {
			return fmt.Sprintf("%s: event %s is unknown, the seats cannot be checked", describe(e), e.EventID)
		}
		booked[e.EventID] += e.Seats
		return fmt.Sprintf("%s: %d of %d seats booked", describe(e), booked[e.EventID], capacity)
	}
	return fmt.Sprintf("%s: ignored", ev.EventName())
}

// bookingTooEarly reports whether ev is a booking of an event not yet known.
func bookingTooEarly(known map[string]int, ev contracts.Event) bool {
	b, ok := ev.(*contracts.EventBooked)
	if !ok {
		return false
	}
	_, isKnown := known[b.EventID]
	return !isKnown
}

// describe names an event in one short phrase.
func describe(ev contracts.Event) string {
	switch e := ev.(type) {
	case *contracts.LocationCreated:
		return fmt.Sprintf("location.created %s", e.ID)
	case *contracts.EventCreated:
		return fmt.Sprintf("event.created %s (location %s)", e.ID, e.LocationID)
	case *contracts.EventBooked:
		return fmt.Sprintf("event.booked %s (event %s, seats %d)", e.ID, e.EventID, e.Seats)
	}
	return ev.EventName()
}

// readPartition returns every record of one partition, from the oldest
// offset to the end it had when the call started.
func readPartition(ctx context.Context, client sarama.Client, consumer sarama.Consumer, topic string, partition int32) ([]*sarama.ConsumerMessage, error) {
	oldest, err := client.GetOffset(topic, partition, sarama.OffsetOldest)
	if err != nil {
		return nil, fmt.Errorf("reading the oldest offset of %s/%d: %w", topic, partition, err)
	}
	end, err := client.GetOffset(topic, partition, sarama.OffsetNewest)
	if err != nil {
		return nil, fmt.Errorf("reading the end offset of %s/%d: %w", topic, partition, err)
	}
	if end <= oldest {
		return nil, nil
	}
	pc, err := consumer.ConsumePartition(topic, partition, sarama.OffsetOldest)
	if err != nil {
		return nil, fmt.Errorf("consuming %s/%d: %w", topic, partition, err)
	}
	defer pc.Close()
	timeout := time.NewTimer(readTimeout)
	defer timeout.Stop()
	var msgs []*sarama.ConsumerMessage
	for {
		select {
		case m := <-pc.Messages():
			msgs = append(msgs, m)
			if m.Offset >= end-1 {
				return msgs, nil
			}
		case cerr := <-pc.Errors():
			return nil, fmt.Errorf("consuming %s/%d: %w", topic, partition, cerr)
		case <-timeout.C:
			return nil, fmt.Errorf("consuming %s/%d: no record at offset %d after %v", topic, partition, len(msgs)+int(oldest), readTimeout)
		case <-ctx.Done():
			return nil, fmt.Errorf("consuming %s/%d: %w", topic, partition, ctx.Err())
		}
	}
}

// newConfig is the sarama configuration of this lab.
func newConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	// Say which protocol version to speak; both the embedded Kafka and
	// Kafka 4.x accept 3.6.
	cfg.Version = sarama.V3_6_0_0
	cfg.ClientID = "myevents-09-partition-key-envelope"
	// Give up quickly when no broker answers.
	cfg.Net.DialTimeout = 3 * time.Second
	cfg.Metadata.Retry.Max = 1
	// A sync producer waits for the broker's answer: where the record
	// landed, or why it did not.
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	// Order within a partition is only as good as the producer: with
	// several requests in flight, a retried request can overtake the next
	// one. The idempotent producer (one request in flight) keeps the order
	// and never writes a retried record twice.
	cfg.Producer.Idempotent = true
	cfg.Net.MaxOpenRequests = 1
	// The default, spelled out: the FNV-1a hash of the key, read as a
	// signed int32, Go's remainder by the partition count, and the sign of a
	// negative result flipped (not the Java client's masked modulo; the
	// chapter shows a key where they differ). A nil key would pick a random
	// partition.
	cfg.Producer.Partitioner = sarama.NewHashPartitioner
	cfg.Consumer.Return.Errors = true
	// The lab stops reading at the end of a partition, and closing a
	// partition consumer waits for the fetch in flight, which the broker
	// holds open for up to MaxWaitTime when there is nothing new. Keep it
	// short so that the lab does not wait half a second per partition.
	cfg.Consumer.MaxWaitTime = 50 * time.Millisecond
	return cfg
}

// recreateTopic deletes the topic if a previous run left it behind and
// creates it empty.
func recreateTopic(ctx context.Context, admin sarama.ClusterAdmin, name string, partitions int32) error {
	if err := admin.DeleteTopic(name); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return fmt.Errorf("deleting topic %s: %w", name, err)
	}
	// Apache Kafka deletes a topic in the background; until it is gone,
	// creating it again answers "already exists", so retry for a while.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := admin.CreateTopic(name, &sarama.TopicDetail{
			NumPartitions:     partitions,
			ReplicationFactor: -1, // the broker's default
		}, false) // validateOnly
		if err == nil {
			return nil
		}
		if !errors.Is(err, sarama.ErrTopicAlreadyExists) || time.Now().After(deadline) {
			return fmt.Errorf("creating topic %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("creating topic %s: %w", name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// roundTrip encodes v as JSON and decodes it into out.
func roundTrip(v, out any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding: %w", err)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decoding: %w", err)
	}
	return nil
}

// equalJSON reports whether two events encode to the same JSON.
func equalJSON(a, b contracts.Event) bool {
	x, errX := json.Marshal(a)
	y, errY := json.Marshal(b)
	return errX == nil && errY == nil && bytes.Equal(x, y)
}

// oneLine puts a multi-line mapstructure error on one line.
func oneLine(err error) string {
	if err == nil {
		return "no error"
	}
	var parts []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" && l != "decoding failed due to the following error(s):" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}
