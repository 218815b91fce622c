//go:build exercise

package main

import (
	"context"
	"fmt"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/contracts"
	"example.com/myevents/labs/labkit"
)

// booking builds one keyed record for topic: the booking id of the event
// eventID (user "user-"+eventID, 2 seats, on bookingDate), in its envelope,
// with the event ID as the record key.
//
// Exercise: finish booking (its envelope is done: build the keyed record)
// and write produceAsync, following the steps in each.
// Check them with
//
//	go test -tags exercise ./labs/08-kafka-produce
//
// and see them in the program with go run -tags exercise ./labs/08-kafka-produce.
// The hints are in docs/exercises.md; the answer is in solution.go.
func booking(topic, id, eventID string) (*sarama.ProducerMessage, error) {
	// Wrap the booking in its envelope: the value every service reads.
	value, err := contracts.Wrap(contracts.EventBooked{
		ID:      id,
		EventID: eventID,
		UserID:  "user-" + eventID,
		Seats:   2,
		Date:    bookingDate,
	})
	if err != nil {
		return nil, fmt.Errorf("wrapping booking %s: %w", id, err)
	}

	// Build the record for topic, keyed by the event ID (the partition key
	// of event.booked): the partitioner hashes the key, so every booking
	// of one event lands on one partition, in the order it was sent. The
	// value is the envelope.
	_ = value // delete this line once your record uses value
	return nil, labkit.TODO("booking", "build a *sarama.ProducerMessage for topic with Key = the event ID and Value = the envelope")
}

// produceAsync feeds n bookings into the AsyncProducer, the i-th built by
// msg, err := bulkBooking(topic, prefix, i) (an error there is returned),
// and waits until the broker has acknowledged or refused every one; it
// returns how long that took. The caller closes p.
func produceAsync(ctx context.Context, p sarama.AsyncProducer, topic, prefix string, n int) (time.Duration, error) {
	// Feed Input from a goroutine of its own. Input blocks once the
	// producer's buffers are full, and they only empty while someone reads
	// Successes and Errors: feed and drain in one goroutine and it
	// deadlocks.

	// The caller closes p after we return; sending on Input after that
	// would panic, so on the way out stop the feeder (cancel) and wait for
	// it, in that order (defers run last-in, first-out).

	// Drain both channels: every message comes back exactly once, on
	// Successes (with its partition and offset) or on Errors. Ctrl-C (ctx)
	// stops the wait.

	// Report the time, or how many bookings failed, with the first refusal.
	return 0, labkit.TODO("produceAsync", "feed p.Input() from a goroutine and count n results on p.Successes() and p.Errors()")
}
