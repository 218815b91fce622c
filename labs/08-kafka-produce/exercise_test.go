package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labkit"
)

// TestExerciseBookingKeysByEvent checks the first half of the lab's
// exercise, booking: bookings of six events, three rounds, sent one by one
// with a SyncProducer, are read back from the topic with the test's own
// consumer. Each record must hold the booking it was built from, carry the
// event ID as its key, and every booking of one event must be on one
// partition, in the order sent.
func TestExerciseBookingKeysByEvent(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	topic := brokertest.Name(t, "events")
	createTopic(t, kafka.Brokers, topic, 4)
	t.Cleanup(func() { deleteTopic(t, kafka.Brokers, topic) })

	if _, err := booking(topic, "bk-probe", "probe"); errors.Is(err, labkit.ErrTODO) {
		t.Fatal(err)
	} else if err != nil {
		t.Fatalf("booking(%q, %q, %q): %v", topic, "bk-probe", "probe", err)
	}

	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Producer.Return.Successes = true
	producer, err := sarama.NewSyncProducer(kafka.Brokers, cfg)
	if err != nil {
		t.Fatalf("creating the SyncProducer: %v", err)
	}
	defer producer.Close()
	events := []string{"metallica", "adele", "oasis", "muse", "blur", "pulp"}
	var sent []string // booking IDs in the order sent
	eventOf := map[string]string{}
	for round := range 3 {
		for i, ev := range events {
			id := fmt.Sprintf("bk-%02d", round*len(events)+i+1)
			msg, err := booking(topic, id, ev)
			if err != nil {
				t.Fatalf("booking(%q, %q, %q): %v", topic, id, ev, err)
			}
			if msg == nil {
				t.Fatalf("booking(%q, %q, %q) returned no message and no error", topic, id, ev)
			}
			if msg.Topic != topic {
				t.Fatalf("booking(%q, %q, %q) addressed the record to topic %q", topic, id, ev, msg.Topic)
			}
			if _, _, err := producer.SendMessage(msg); err != nil {
				t.Fatalf("sending %s: %v", id, err)
			}
			sent = append(sent, id)
			eventOf[id] = ev
		}
	}

	records, _ := consumeAll(t, kafka.Brokers, topic)
	var got, wrongKeys []string
	for _, r := range records {
		got = append(got, r.id)
		switch {
		case r.eventID != eventOf[r.id]:
			t.Errorf("partition %d offset %d holds %s of event %q; it was sent as a booking of %q", r.partition, r.offset, r.id, r.eventID, eventOf[r.id])
		case r.key != r.eventID:
			wrongKeys = append(wrongKeys, fmt.Sprintf("%s (event %s) at partition %d offset %d has key %q", r.id, r.eventID, r.partition, r.offset, r.key))
		}
	}
	if len(wrongKeys) > 0 {
		t.Errorf("%d of %d records are not keyed by their event ID: %s", len(wrongKeys), len(records), shorten(wrongKeys))
	}
	if !brokertest.CheckIDs(t, "bookings on the topic", got, sent) {
		t.FailNow()
	}
	checkOnePartitionInOrder(t, records, sent)
}

// TestExerciseProduceAsyncDeliversEveryBooking checks the second half,
// produceAsync, with 3000 bookings: enough to fill the AsyncProducer's
// buffers, so that a feeder that does not run beside the drain blocks for
// good. When produceAsync returns, the broker must hold every booking
// exactly once, each event's bookings on one partition in the order fed.
func TestExerciseProduceAsyncDeliversEveryBooking(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	topic := brokertest.Name(t, "events")
	createTopic(t, kafka.Brokers, topic, 4)
	t.Cleanup(func() { deleteTopic(t, kafka.Brokers, topic) })
	const n = 3000

	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Idempotent = true
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.Return.Successes = true
	cfg.Producer.Return.Errors = true
	producer, err := sarama.NewAsyncProducer(kafka.Brokers, cfg)
	if err != nil {
		t.Fatalf("creating the AsyncProducer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		took time.Duration
		err  error
	}
	done := make(chan result, 1)
	go func() {
		took, err := produceAsync(ctx, producer, topic, "ex", n)
		done <- result{took, err}
	}()
	var res result
	select {
	case res = <-done:
	case <-time.After(30 * time.Second):
		// Still blocked. Closing the producer now could make a send on
		// Input panic, so leave it to the end of the test binary.
		cancel()
		t.Fatalf("produceAsync has not returned after 30 s with %d bookings: is something reading Successes() and Errors() while Input() is being fed?", n)
	}
	if errors.Is(res.err, labkit.ErrTODO) {
		_ = producer.Close()
		t.Fatal(res.err)
	}
	if res.err != nil {
		_ = producer.Close()
		t.Fatalf("produceAsync: %v", res.err)
	}

	// Every result was read before produceAsync returned: closing the
	// producer now must leave nothing on Successes or Errors.
	if unread := closeAndCount(producer); unread > 0 {
		t.Errorf("produceAsync returned with %d of %d results still unread on Successes() and Errors(): wait for the result of every booking before returning", unread, n)
	}
	records, _ := consumeAll(t, kafka.Brokers, topic)
	var want, got []string
	for i := range n {
		want = append(want, fmt.Sprintf("ex-%06d", i))
	}
	for _, r := range records {
		got = append(got, r.id)
	}
	if !brokertest.CheckIDs(t, "bookings on the topic", got, want) {
		t.FailNow()
	}
	checkOnePartitionInOrder(t, records, want)
	t.Logf("produceAsync sent %d bookings in %v", n, res.took)
}

// TestExerciseProduceAsyncCountsFailures sets Producer.MaxMessageBytes to
// 100, less than any booking: the producer refuses every one of them on
// Errors() and none reaches Successes(). produceAsync must read the
// refusals as results, return soon, and return an error that counts them.
func TestExerciseProduceAsyncCountsFailures(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	topic := brokertest.Name(t, "events")
	createTopic(t, kafka.Brokers, topic, 4)
	t.Cleanup(func() { deleteTopic(t, kafka.Brokers, topic) })
	const n = 50

	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Producer.Return.Successes = true
	cfg.Producer.Return.Errors = true
	cfg.Producer.MaxMessageBytes = 100 // every booking is larger
	producer, err := sarama.NewAsyncProducer(kafka.Brokers, cfg)
	if err != nil {
		t.Fatalf("creating the AsyncProducer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := produceAsync(ctx, producer, topic, "ex", n)
		done <- err
	}()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		// Still blocked. Closing the producer now could make a send on
		// Input panic, so leave it to the end of the test binary.
		cancel()
		t.Fatalf("produceAsync has not returned after 10 s, and the producer refused all %d bookings (they are larger than Producer.MaxMessageBytes): a refused booking comes back on p.Errors(), not p.Successes(), so read both and count a result from either", n)
	}
	if errors.Is(err, labkit.ErrTODO) {
		_ = producer.Close()
		t.Fatal(err)
	}
	if unread := closeAndCount(producer); unread > 0 {
		t.Errorf("produceAsync returned with %d of %d refusals still unread on p.Errors(): wait for the result of every booking before returning", unread, n)
	}
	switch {
	case err == nil:
		t.Errorf("produceAsync returned no error, but the producer refused all %d bookings on p.Errors(): return an error that says how many failed", n)
	case errors.Is(err, context.Canceled):
		t.Errorf("produceAsync returned %q, but nothing cancelled it: the refusals on p.Errors() are results too", err)
	case !regexp.MustCompile(fmt.Sprintf(`\b%d\b`, n)).MatchString(err.Error()):
		t.Errorf("produceAsync returned %q, which does not say how many bookings failed (all %d): count the errors you read from p.Errors() and put the count in the error", err, n)
	}
}

// TestExerciseProduceAsyncStopsOnCtrlC interrupts produceAsync while its
// feeder is still sending: it returns the cancellation, and closing the
// producer afterwards does not panic (a send on Input after Close would).
func TestExerciseProduceAsyncStopsOnCtrlC(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	topic := brokertest.Name(t, "events")
	createTopic(t, kafka.Brokers, topic, 4)
	t.Cleanup(func() { deleteTopic(t, kafka.Brokers, topic) })
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Producer.Return.Successes = true
	producer, err := sarama.NewAsyncProducer(kafka.Brokers, cfg)
	if err != nil {
		t.Fatalf("creating the AsyncProducer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = produceAsync(ctx, producer, topic, "async", 100000)
	if errors.Is(err, labkit.ErrTODO) {
		_ = producer.Close()
		t.Fatal(err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("produceAsync after Ctrl-C = %v, want the cancellation", err)
	}
	if err := producer.Close(); err != nil {
		t.Errorf("closing the AsyncProducer: %v", err)
	}
}

// checkOnePartitionInOrder reports every event whose bookings are spread
// over several partitions, naming where each landed, and every event whose
// bookings are on the topic in another order than sent.
func checkOnePartitionInOrder(t *testing.T, records []record, sent []string) {
	t.Helper()
	position := map[string]int{}
	for i, id := range sent {
		position[id] = i
	}
	byEvent := map[string][]record{}
	for _, r := range records {
		byEvent[r.eventID] = append(byEvent[r.eventID], r)
	}
	for _, ev := range slices.Sorted(maps.Keys(byEvent)) {
		rs := byEvent[ev]
		partitions := map[int32][]string{}
		for _, r := range rs {
			partitions[r.partition] = append(partitions[r.partition], fmt.Sprintf("%s at offset %d", r.id, r.offset))
		}
		if len(partitions) > 1 {
			var where []string
			for p, at := range partitions {
				where = append(where, fmt.Sprintf("partition %d: %s", p, shorten(at)))
			}
			slices.Sort(where)
			t.Errorf("the bookings of %s landed on %d partitions (%s); the partitioner hashes the record key, so key every booking by its event ID",
				ev, len(partitions), strings.Join(where, "; "))
			continue
		}
		slices.SortFunc(rs, func(a, b record) int { return int(a.offset - b.offset) })
		for i := 1; i < len(rs); i++ {
			if position[rs[i].id] < position[rs[i-1].id] {
				t.Errorf("the bookings of %s are out of order on partition %d: %s (offset %d) was sent before %s (offset %d); feed Input from one goroutine, in order",
					ev, rs[i].partition, rs[i].id, rs[i].offset, rs[i-1].id, rs[i-1].offset)
				break
			}
		}
	}
}

// shorten keeps a list readable in a failure message.
func shorten(list []string) string {
	if len(list) > 4 {
		return strings.Join(list[:4], ", ") + fmt.Sprintf(" ... (%d in all)", len(list))
	}
	return strings.Join(list, ", ")
}

// closeAndCount closes the producer and counts the results it still had
// to hand out on Successes and Errors.
func closeAndCount(p sarama.AsyncProducer) int {
	p.AsyncClose()
	unread := 0
	successes, errs := p.Successes(), p.Errors()
	for successes != nil || errs != nil {
		select {
		case _, ok := <-successes:
			if !ok {
				successes = nil
				continue
			}
		case _, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
		}
		unread++
	}
	return unread
}
