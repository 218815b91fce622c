package live

import (
	"context"
	"fmt"
	"time"
)

// restartBookings stops BookingService and starts it again, and says what
// the room just watched:
//
//   - Kafka, memory store: the new BookingService starts empty and replays
//     the log from the oldest record, answering 503 until it has caught up
//     with the log as it was at its start.
//   - RabbitMQ, SQLite store: while it is down, EventService creates a
//     concert, whose two events wait in BookingService's queue; the new
//     BookingService, on the same SQLite file, drains them.
func (v *View) restartBookings(ctx context.Context, _ request) (bool, string, error) {
	amqp := v.brokerKind() == "amqp"
	if err := v.cfg.Services.Stop(BookingService); err != nil {
		return false, "stopping BookingService: " + err.Error(), nil
	}
	v.waitFor(ctx, BookingService, stateDown)

	meanwhile := ""
	if amqp {
		ok, text, err := v.createConcert(ctx, "Created while BookingService was down", 10)
		if err != nil || !ok {
			meanwhile = "; while it was down, " + text
		} else {
			waiting := v.waitQueue(ctx, 2)
			meanwhile = fmt.Sprintf("; while it was down EventService created a concert, and %d messages waited in the queue", waiting)
			if v.isSlow() {
				pause(ctx, 2*time.Second) // let the room see the queue hold them
			}
		}
	}

	if err := v.cfg.Services.Start(BookingService); err != nil {
		return false, "starting BookingService again: " + err.Error() + meanwhile, nil
	}
	started := time.Now()
	saw503 := false
	deadline := started.Add(time.Minute)
	for {
		state := v.checkService(ctx, BookingService, v.cfg.BookingsURL)
		saw503 = saw503 || state == stateUnavailable
		if state == stateUp && v.runDone() {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false, "BookingService restarted, but it has not caught up after a minute" + meanwhile, nil
		}
		pause(ctx, 50*time.Millisecond)
	}
	took := time.Since(started).Round(10 * time.Millisecond)
	run := v.currentRun()
	slow := ""
	if run.pace > 0 {
		slow = fmt.Sprintf(" (slow motion: %v per event)", run.pace)
	}

	if amqp {
		return true, fmt.Sprintf("restarted BookingService on the same SQLite file%s; it drained the queue in %v: %d events applied%s",
			meanwhile, took, run.applied, slow), nil
	}
	answered := "it answered 503 while it replayed the log, then"
	if !saw503 {
		answered = "it replayed the log before a request could see its 503, and"
	}
	return true, fmt.Sprintf("restarted BookingService with an empty store: %s caught up after %v: %d events applied from %d records in the log%s; serving",
		answered, took, run.applied, run.waiting, slow), nil
}

// waitQueue polls the broker until at least n messages wait for
// BookingService (up to 10 s) and returns how many do.
func (v *View) waitQueue(ctx context.Context, n int64) int64 {
	var waiting int64
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		w, err := v.cfg.Broker.Waiting(ctx)
		if err == nil {
			waiting = w
			if w >= n {
				break
			}
		}
		pause(ctx, 50*time.Millisecond)
	}
	return waiting
}

// poison sends a message BookingService can never process and waits until
// its dead-lettered copy shows up.
func (v *View) poison(ctx context.Context, req request) (bool, string, error) {
	if req.Event != "" {
		if _, err := v.concertName(req.Event); err != nil {
			return false, "", err
		}
	}
	before := v.deadLetters()
	what, err := v.cfg.Broker.Poison(ctx, req.Event)
	if err != nil {
		return false, "sending a poison message: " + err.Error(), nil
	}
	deadline := time.Now().Add(15 * time.Second)
	for v.deadLetters() == before {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false, "sent " + what + ", but no dead-lettered copy showed up within 15 s (is BookingService running?)", nil
		}
		pause(ctx, 50*time.Millisecond)
	}
	last := v.lastDeadLetter()
	return true, fmt.Sprintf("sent %s; BookingService's listener dead-lettered it at once: %s (%s)", what, last.DeadLetter.Reason, last.Queue+last.Topic), nil
}

// locked returns what read returns, called with v.mu held.
func locked[T any](v *View, read func() T) T {
	v.mu.Lock()
	defer v.mu.Unlock()
	return read()
}

func (v *View) brokerKind() string { return locked(v, func() string { return v.broker.Kind }) }

func (v *View) isSlow() bool { return locked(v, func() bool { return v.slow }) }

func (v *View) runDone() bool { return locked(v, func() bool { return !v.run.done.IsZero() }) }

func (v *View) currentRun() bookingRun { return locked(v, func() bookingRun { return v.run }) }

// deadLetters counts the dead-lettered copies seen.
func (v *View) deadLetters() int { return locked(v, func() int { return v.dlCount }) }

// lastDeadLetter is the newest dead-lettered copy; call it after
// deadLetters counted one.
func (v *View) lastDeadLetter() Record { return locked(v, func() Record { return v.dlLast.Record }) }
