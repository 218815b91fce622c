//go:build !exercise

package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/contracts"
)

// booking builds one keyed record for topic: the booking id of the event
// eventID (user "user-"+eventID, 2 seats, on bookingDate), in its envelope,
// with the event ID as the record key.
//
// booking and produceAsync are the lab's exercise: exercise.go holds the
// template, and go test -tags exercise ./labs/08-kafka-produce checks it.
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
	return &sarama.ProducerMessage{
		Topic: topic,
		Key:   sarama.StringEncoder(eventID),
		Value: sarama.ByteEncoder(value),
	}, nil
}

// produceAsync feeds n bookings into the AsyncProducer, the i-th built by
// msg, err := bulkBooking(topic, prefix, i) (an error there is returned),
// and waits until the broker has acknowledged or refused every one; it
// returns how long that took. The caller closes p.
func produceAsync(ctx context.Context, p sarama.AsyncProducer, topic, prefix string, n int) (time.Duration, error) {
	start := time.Now()

	// Feed Input from a goroutine of its own. Input blocks once the
	// producer's buffers are full, and they only empty while someone reads
	// Successes and Errors: feed and drain in one goroutine and it
	// deadlocks.
	var feeding sync.WaitGroup
	// The caller closes p after we return; sending on Input after that
	// would panic, so on the way out stop the feeder (cancel) and wait for
	// it, in that order (defers run last-in, first-out).
	defer feeding.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	feedErr := make(chan error, 1)
	feeding.Go(func() {
		for i := range n {
			msg, err := bulkBooking(topic, prefix, i)
			if err != nil {
				feedErr <- err
				return
			}
			select {
			case p.Input() <- msg:
			case <-ctx.Done():
				return
			}
		}
	})

	// Drain both channels: every message comes back exactly once, on
	// Successes (with its partition and offset) or on Errors. Ctrl-C (ctx)
	// stops the wait.
	var failed int
	var firstErr error
	for done := 0; done < n; done++ {
		select {
		case <-p.Successes():
		case perr := <-p.Errors():
			failed++
			if firstErr == nil {
				firstErr = perr.Err
			}
		case err := <-feedErr:
			return 0, err
		case <-ctx.Done():
			return 0, fmt.Errorf("interrupted after %d of %d bookings with the AsyncProducer: %w", done, n, ctx.Err())
		}
	}

	// Report the time, or how many bookings failed, with the first refusal.
	elapsed := time.Since(start)
	if failed > 0 {
		return 0, fmt.Errorf("%d of %d bookings sent with the AsyncProducer failed, the first with: %w", failed, n, firstErr)
	}
	return elapsed, nil
}
