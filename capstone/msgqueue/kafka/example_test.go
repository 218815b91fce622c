package kafka_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"example.com/myevents/capstone/msgqueue/kafka"
	"example.com/myevents/contracts"
)

// A service that keeps its state in memory rebuilds it from the whole log
// at start-up, and answers requests only once it has caught up.
func ExampleNewReplayListener() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	brokers := []string{"127.0.0.1:9092"}

	// Build the listener: every partition of "events", from the oldest
	// record, no consumer group.
	l, err := kafka.NewReplayListener(ctx, brokers,
		[]string{contracts.EventCreatedName, contracts.EventBookedName},
		kafka.WithLogger(slog.Default()))
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	defer l.Close()

	// Listen in the background; the handler must be idempotent, because
	// every start replays everything.
	done := make(chan error, 1)
	go func() {
		done <- l.Listen(ctx, func(ctx context.Context, ev contracts.Event) error {
			// Apply ev to the in-memory state.
			return nil
		})
	}()

	// Wait until everything that was in the log at start is applied.
	select {
	case <-l.CaughtUp():
		fmt.Println("caught up; start serving")
	case err := <-done:
		fmt.Println("listening failed:", err)
		return
	case <-time.After(time.Minute):
		fmt.Println("still replaying after a minute")
		return
	}
	// Serve requests here; new events keep arriving meanwhile.
}

// A service that keeps its state in a database resumes where its consumer
// group left off.
func ExampleNewGroupListener() {
	ctx := context.Background()
	brokers := []string{"127.0.0.1:9092"}

	// Emit: returns once all in-sync replicas have the event.
	em, err := kafka.NewEmitter(ctx, brokers)
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	defer em.Close()

	// Listen as a member of the group "bookingservice".
	l, err := kafka.NewGroupListener(ctx, brokers, "bookingservice", contracts.Names(),
		kafka.WithDeliveryLimit(5), kafka.WithRetryBackoff(100*time.Millisecond, 5*time.Second))
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	defer l.Close() // waits for the handler, commits, leaves the group

	_ = l.Listen(ctx, func(ctx context.Context, ev contracts.Event) error {
		// Returning an error hands the same event to this function again
		// after a backoff; msgqueue.Permanent(err) dead-letters it at once.
		return nil
	}, contracts.EventCreatedName)
}
