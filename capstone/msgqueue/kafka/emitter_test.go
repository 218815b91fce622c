package kafka

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/msgqueuetest"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// murmur2 is the hash the Java client's default partitioner applies to a
// record key, written here from its definition so that the test checks the
// transport against Java's partitioning, not against itself.
func murmur2(data []byte) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	h := seed ^ uint32(len(data))
	for len(data) >= 4 {
		k := uint32(data[0]) | uint32(data[1])<<8 | uint32(data[2])<<16 | uint32(data[3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
		data = data[4:]
	}
	switch len(data) {
	case 3:
		h ^= uint32(data[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}

// javaPartition is where Java's default partitioner puts key.
func javaPartition(key string, partitions int32) int32 {
	return int32(murmur2([]byte(key))&0x7fffffff) % partitions
}

// The record key is the partition key, the partition is the one Java's
// default partitioner picks for that key, and the events of one key keep
// their order.
func TestEmitKeyPicksPartition(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const partitions = 5
	em := e.emitter(WithPartitions(partitions))

	// Emit three events for each of ten keys, interleaved.
	var want []string
	for seq := 1; seq <= 3; seq++ {
		for k := range 10 {
			key := fmt.Sprintf("event-%d", k)
			id := fmt.Sprintf("%s-booking-%d", key, seq)
			e.emit(em, booked(id, key, seq))
			want = append(want, id)
		}
	}

	recs := e.records(e.topic)
	var got []string
	lastSeq := map[string]int{}
	used := map[int32]bool{}
	for _, r := range recs {
		key := string(r.Key)
		if wantP := javaPartition(key, partitions); r.Partition != wantP {
			t.Errorf("key %s went to partition %d, want %d (murmur2, as the Java client)", key, r.Partition, wantP)
		}
		used[r.Partition] = true
		name, ev, err := contracts.Unwrap(r.Value)
		if err != nil || name != contracts.EventBookedName {
			t.Fatalf("record at %d/%d: Unwrap = %q, %v", r.Partition, r.Offset, name, err)
		}
		b := ev.(*contracts.EventBooked)
		if b.EventID != key {
			t.Errorf("record key %q, but the event's partition key is %q", key, b.EventID)
		}
		if b.Seats <= lastSeq[key] {
			t.Errorf("key %s: seq %d came after seq %d", key, b.Seats, lastSeq[key])
		}
		lastSeq[key] = b.Seats
		got = append(got, b.ID)
	}
	brokertest.CheckIDs(t, "records on the topic", got, want)
	if len(recs) != len(want) {
		t.Errorf("%d records on the topic, want %d", len(recs), len(want))
	}
	if len(used) < 2 {
		t.Errorf("ten keys all went to partitions %v; the key is not used", used)
	}
}

// The value is exactly the envelope {"eventName", "payload"} with the
// contract's snake_case JSON, and the key is the event's ID.
func TestEmitEnvelopeOnWire(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	em := e.emitter()
	start := time.Date(2026, 3, 14, 19, 30, 0, 0, time.UTC)
	e.emit(em, contracts.EventCreated{
		ID: "ev-1", Name: "Opera Night", LocationID: "loc-1", Hall: "Main", Capacity: 800,
		StartDate: start, EndDate: start.Add(3 * time.Hour),
	})

	recs := e.records(e.topic)
	if len(recs) != 1 {
		t.Fatalf("%d records on the topic, want 1", len(recs))
	}
	if string(recs[0].Key) != "ev-1" {
		t.Errorf("key %q, want the event ID %q", recs[0].Key, "ev-1")
	}
	want := `{"eventName":"event.created","payload":{"id":"ev-1","name":"Opera Night","location_id":"loc-1",` +
		`"hall":"Main","capacity":800,"start_date":"2026-03-14T19:30:00Z","end_date":"2026-03-14T22:30:00Z"}}`
	var compact bytes.Buffer
	if err := json.Compact(&compact, recs[0].Value); err != nil {
		t.Fatalf("value is not JSON: %v: %s", err, recs[0].Value)
	}
	if compact.String() != want {
		t.Errorf("value\n got %s\nwant %s", compact.String(), want)
	}
}

// Concurrent Emit calls are all acknowledged and each is written once.
func TestEmitConcurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	em := e.emitter()
	const goroutines, each = 8, 100
	var (
		wg   sync.WaitGroup
		want []string
		mu   sync.Mutex
	)
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("g%d-%03d", g, i)
				if err := em.Emit(context.Background(), booked(id, fmt.Sprintf("event-%d", i%7), 1)); err != nil {
					t.Errorf("Emit %s: %v", id, err)
					return
				}
				mu.Lock()
				want = append(want, id)
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	recs := e.records(e.topic)
	var got []string
	for _, r := range recs {
		_, ev, err := contracts.Unwrap(r.Value)
		if err != nil {
			t.Fatalf("record %d/%d: %v", r.Partition, r.Offset, err)
		}
		got = append(got, idOf(ev))
	}
	brokertest.CheckIDs(t, "records on the topic", got, want)
	if len(recs) != goroutines*each {
		t.Errorf("%d records for %d emits: duplicates were written", len(recs), goroutines*each)
	}
}

// An invalid event is refused before anything is sent; a cancelled
// context and a closed emitter give errors saying so.
func TestEmitErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	em := e.emitter()

	err := em.Emit(context.Background(), contracts.EventBooked{ID: "b-1"})
	if !errors.Is(err, contracts.ErrInvalid) {
		t.Errorf("Emit(invalid event) = %v, want an error wrapping contracts.ErrInvalid", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := em.Emit(ctx, booked("b-2", "event-1", 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Emit(cancelled ctx) = %v, want context.Canceled", err)
	}
	if n := len(e.records(e.topic)); n != 0 {
		t.Errorf("%d records on the topic, want none", n)
	}

	if err := em.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if err := em.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if err := em.Emit(context.Background(), booked("b-3", "event-1", 1)); !errors.Is(err, msgqueue.ErrClosed) {
		t.Errorf("Emit after Close = %v, want msgqueue.ErrClosed", err)
	}
}

// No broker, no address, or bad options: one clear sentence, no panic.
func TestConstructorErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	down := []string{"127.0.0.1:1"}
	names := []string{contracts.EventBookedName}
	for _, tc := range []struct {
		name string
		mk   func() error
		want []string
	}{
		{"emitter, nothing listening", func() error { _, err := NewEmitter(ctx, down); return err },
			[]string{"connecting to Kafka at 127.0.0.1:1: no broker answered", "KAFKA_BROKERS"}},
		{"group listener, nothing listening", func() error { _, err := NewGroupListener(ctx, down, "g", names); return err },
			[]string{"connecting to Kafka at 127.0.0.1:1: no broker answered"}},
		{"replay listener, nothing listening", func() error { _, err := NewReplayListener(ctx, down, names); return err },
			[]string{"connecting to Kafka at 127.0.0.1:1: no broker answered"}},
		{"no address", func() error { _, err := NewEmitter(ctx, nil); return err },
			[]string{"no broker address given", "KAFKA_BROKERS"}},
		{"no group", func() error { _, err := NewGroupListener(ctx, down, "", names); return err },
			[]string{"consumer group name is empty"}},
		{"zero partitions", func() error { _, err := NewEmitter(ctx, down, WithPartitions(0)); return err },
			[]string{"partitions must be at least 1"}},
		{"unknown event name", func() error { _, err := NewReplayListener(ctx, down, []string{"event.cancelled"}); return err },
			[]string{"unknown event name", "event.cancelled"}},
		{"no event names", func() error { _, err := NewReplayListener(ctx, down, nil); return err },
			[]string{"no event names given"}},
		{"zero delivery limit", func() error { _, err := NewEmitter(ctx, down, WithDeliveryLimit(0)); return err },
			[]string{"delivery limit must be at least 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.mk()
			if err == nil || !contains(err.Error(), tc.want...) {
				t.Errorf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestEmitRefusesOversizedEvents: an event whose record would be over
// 64 KiB is never written, so no listener has to refuse it.
func TestEmitRefusesOversizedEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	em := e.emitter()
	loc := msgqueuetest.BulkyLocation()
	if err := loc.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := em.Emit(context.Background(), loc); !errors.Is(err, msgqueue.ErrTooLarge) {
		t.Errorf("Emit = %v, want ErrTooLarge", err)
	}
	if n := len(e.records(e.topic)); n != 0 {
		t.Errorf("the topic holds %d records", n)
	}
}

// TestEmitCountsTheKeyTowardTheLimit: a listener counts a record's key,
// value and headers against msgqueue.MaxMessageSize, so an event whose
// envelope fits alone but not with its key must not be written: its
// listeners would dead-letter it, after EventService answered 201.
func TestEmitCountsTheKeyTowardTheLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	em := e.emitter()
	loc, err := msgqueuetest.LocationAtTheLimit(strings.Repeat("k", contracts.MaxIDBytes))
	if err != nil {
		t.Fatal(err)
	}
	if err := em.Emit(context.Background(), loc); !errors.Is(err, msgqueue.ErrTooLarge) {
		t.Errorf("Emit of a %d-byte key with a %d-byte envelope = %v, want ErrTooLarge",
			len(loc.ID), msgqueue.MaxMessageSize, err)
	}
	if n := len(e.records(e.topic)); n != 0 {
		t.Errorf("the topic holds %d records", n)
	}
}
