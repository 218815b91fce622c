package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/go-viper/mapstructure/v2"

	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labkit"
)

// TestExerciseEnvelopeRoundTripsThroughTheBroker checks the lab's exercise
// with one sample of every contract: encodeEnvelope writes the contracts
// wire format (byte for byte what contracts.Wrap writes), decodeEnvelope
// reads contracts.Wrap's bytes back into an equal event, and both hold
// through the broker: publish (which calls encodeEnvelope) puts each event
// on a topic, and what the test's own consumer reads back decodes into the
// event that was sent, at the key the event names.
func TestExerciseEnvelopeRoundTripsThroughTheBroker(t *testing.T) {
	t.Parallel()
	s := samples()
	for _, name := range contracts.Names() {
		ev, ok := s[name]
		if !ok {
			t.Fatalf("no sample for %s: add one to samples()", name)
		}
		want, err := contracts.Wrap(ev)
		if err != nil {
			t.Fatalf("contracts.Wrap(%s): %v", name, err)
		}

		// Encoding: the wire format is the contracts one.
		value, err := encodeEnvelope(ev)
		if errors.Is(err, labkit.ErrTODO) {
			t.Fatal(err)
		}
		if err != nil {
			t.Fatalf("encodeEnvelope(%s): %v", name, err)
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(value, &raw); err != nil || len(raw) != 2 || string(raw["eventName"]) != `"`+name+`"` {
			t.Errorf("encodeEnvelope(%s) = %s; want an object of exactly eventName %q and payload", name, value, name)
		} else if !bytes.Equal(value, want) {
			t.Errorf("encodeEnvelope(%s) differs from the wire format:\n got  %s\n want %s", name, value, want)
		}

		// Decoding what the capstone's producers write.
		got, err := decodeEnvelope(want)
		if errors.Is(err, labkit.ErrTODO) {
			t.Fatal(err)
		}
		if err != nil {
			t.Fatalf("decodeEnvelope(%s) of %s: %v", name, want, err)
		}
		if !reflect.DeepEqual(got, ev) {
			t.Errorf("decodeEnvelope(%s) = %#v, want %#v", want, got, ev)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// And through the broker.
	kafka := brokertest.Kafka(t)
	client, admin := kafkaClient(t, kafka.Brokers)
	topic := newTopic(t, client, admin, "lab09-contracts", 1)
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	defer producer.Close()
	for _, name := range contracts.Names() {
		if _, _, err := publish(producer, topic, s[name]); err != nil {
			t.Fatal(err)
		}
	}
	msgs := readAll(t, client, topic)[0]
	if len(msgs) != len(contracts.Names()) {
		t.Fatalf("read %d records, want %d", len(msgs), len(contracts.Names()))
	}
	for i, name := range contracts.Names() {
		m := msgs[i]
		got, err := decodeEnvelope(m.Value)
		if err != nil {
			t.Fatalf("the %s record at partition %d offset %d does not decode: %v\nvalue: %s", name, m.Partition, m.Offset, err, m.Value)
		}
		if !reflect.DeepEqual(got, s[name]) {
			t.Errorf("the %s record at partition %d offset %d decodes to %#v, want %#v", name, m.Partition, m.Offset, got, s[name])
		}
		if string(m.Key) != s[name].PartitionKey() {
			t.Errorf("the %s record at partition %d offset %d has key %q, want %q", name, m.Partition, m.Offset, m.Key, s[name].PartitionKey())
		}
	}
}

// TestExerciseBrokenRecordsAreReportedNotFatal puts a malformed envelope,
// an unknown event name and payloads that do not fit between good records
// on a topic: decodeEnvelope reports each broken record with an error that
// says what is wrong, and the records after them still decode.
func TestExerciseBrokenRecordsAreReportedNotFatal(t *testing.T) {
	t.Parallel()
	s := samples()
	good := func(name string) string {
		v, err := contracts.Wrap(s[name])
		if err != nil {
			t.Fatal(err)
		}
		return string(v)
	}
	if _, err := decodeEnvelope([]byte(good(contracts.EventBookedName))); errors.Is(err, labkit.ErrTODO) {
		t.Fatal(err)
	}
	kafka := brokertest.Kafka(t)
	client, admin := kafkaClient(t, kafka.Brokers)
	topic := newTopic(t, client, admin, "lab09-broken", 1)
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	defer producer.Close()
	records := []struct {
		value, wantErr, why string
	}{
		{good(contracts.EventCreatedName), "", ""},
		{`{"eventName": "event.booked", "payload": `, "malformed envelope", "the JSON ends early"},
		{`{"eventName": "event.cancelled", "payload": {"id": "x"}}`, `unknown event name "event.cancelled"`, "no contract has that name"},
		{`{"payload": {"id": "x"}}`, "eventName is missing", "without a name there is no type to decode into"},
		{`{"eventName": "event.booked", "payload": "text"}`, "malformed envelope", "the payload is not an object"},
		{`{"eventName": "event.booked", "payload": {"id": "b", "event_id": "e", "seats": 2.5}}`, "cannot parse value as 'int'",
			"2.5 seats must not become 2: decode numbers as json.Number (UseNumber)"},
		{`{"eventName": "event.booked", "payload": {"id": "b", "event_id": "e", "seats": 1, "date": "yesterday"}}`, "parsing time",
			"the date is not an RFC 3339 time"},
		{`{"eventName": "event.booked", "payload": {"id": "b", "event_id": "e", "seats": 0}}`, "seats must be at least 1",
			"the event fails Validate"},
		{`{"eventName": "event.booked"}`, "payload is missing", "there is no payload"},
		{`{"eventName": "event.booked", "payload": {"id": "b", "event_id": "e", "seats": 1}} {}`, "malformed envelope",
			"something follows the JSON object"},
		{good(contracts.EventBookedName), "", ""},
		{good(contracts.LocationCreatedName), "", ""},
	}
	for _, r := range records {
		if _, _, err := producer.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(r.value)}); err != nil {
			t.Fatal(err)
		}
	}
	msgs := readAll(t, client, topic)[0]
	if len(msgs) != len(records) {
		t.Fatalf("read %d records, want %d", len(msgs), len(records))
	}
	for i, m := range msgs {
		want := records[i]
		ev, err := decodeEnvelope(m.Value)
		switch {
		case want.wantErr == "" && err != nil:
			t.Errorf("offset %d: %v; want it decoded, broken records before it must not matter\nvalue: %s", m.Offset, err, m.Value)
		case want.wantErr != "" && err == nil:
			t.Errorf("offset %d (%s) decoded to %+v; want an error containing %q: %s", m.Offset, m.Value, ev, want.wantErr, want.why)
		case want.wantErr != "" && !strings.Contains(err.Error(), want.wantErr):
			t.Errorf("offset %d (%s): error %q; want an error containing %q: %s", m.Offset, m.Value, err, want.wantErr, want.why)
		}
	}
	if _, err := decodeEnvelope(msgs[2].Value); !errors.Is(err, contracts.ErrUnknownEvent) {
		t.Errorf("offset 2, an unknown event name: the error %v does not wrap contracts.ErrUnknownEvent", err)
	}
}

// TestExerciseDecoderNeedsTheHookAndAPointer checks newPayloadDecoder on
// the two classic mapstructure mistakes the lab prints: it must turn an RFC
// 3339 string into a time.Time (the hook), fill the json-tagged fields, and
// refuse a Result that is not a pointer.
func TestExerciseDecoderNeedsTheHookAndAPointer(t *testing.T) {
	t.Parallel()
	payload := map[string]any{"id": "b", "event_id": "e", "seats": json.Number("1"), "date": "2026-12-01T20:00:00Z"}
	var b contracts.EventBooked
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{TagName: "json", Result: &b})
	if err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(payload); err == nil || !strings.Contains(err.Error(), "'date'") {
		t.Errorf("without a hook: %v, want an error about 'date'", err)
	}
	dec, err = newPayloadDecoder(&b)
	if errors.Is(err, labkit.ErrTODO) {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatalf("newPayloadDecoder(&b): %v", err)
	}
	if err := dec.Decode(payload); err != nil {
		t.Fatalf("decoding %v: %v", payload, err)
	}
	if want := (contracts.EventBooked{ID: "b", EventID: "e", Seats: 1, Date: time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)}); !reflect.DeepEqual(b, want) {
		t.Errorf("decoding %v filled %+v, want %+v", payload, b, want)
	}
	if _, err := newPayloadDecoder(b); err == nil {
		t.Error("newPayloadDecoder accepted a Result that is not a pointer")
	}
}
