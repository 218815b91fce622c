package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/capstone/internal/app"
	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// bookedLog is a durable queue of the test's own, bound to event.booked
// on the services' exchange: what the broker holds, independently of the
// services, by booking ID and message ID.
type bookedLog struct {
	url, queue string
	byBooking  map[string]map[string]int // booking ID -> message ID -> copies
	messages   int
}

// newBookedLog declares the queue (a quorum queue: it survives the
// broker's application stopping) and deletes it when the test ends.
func newBookedLog(t *testing.T, cfg app.Config) *bookedLog {
	t.Helper()
	b := &bookedLog{url: cfg.AMQPURL, queue: brokertest.Name(t, "booked-log"), byBooking: map[string]map[string]int{}}
	ch, closeConn, err := openChannel(b.url)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn()
	if err := ch.ExchangeDeclare(cfg.Exchange, amqp.ExchangeTopic, true /* durable */, false /* autoDelete */, false /* internal */, false /* noWait */, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(b.queue, true /* durable */, false /* autoDelete */, false /* exclusive */, false, /* noWait */
		amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(b.queue, contracts.EventBookedName, cfg.Exchange, false /* noWait */, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := amqp.Dial(b.url)
		if err != nil {
			t.Logf("cleanup: %v", err)
			return
		}
		defer conn.Close()
		if ch, err := conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(b.queue, false /* ifUnused */, false /* ifEmpty */, false /* noWait */)
		}
	})
	return b
}

// collect takes what the queue holds now.
func (b *bookedLog) collect() error {
	ch, closeConn, err := openChannel(b.url)
	if err != nil {
		return err
	}
	defer closeConn()
	for {
		d, ok, err := ch.Get(b.queue, true /* autoAck */)
		if err != nil || !ok {
			return err
		}
		var ev contracts.EventBooked
		if err := json.Unmarshal(d.Body, &ev); err != nil {
			return fmt.Errorf("event.booked %s: %w", d.MessageId, err)
		}
		if b.byBooking[ev.ID] == nil {
			b.byBooking[ev.ID] = map[string]int{}
		}
		b.byBooking[ev.ID][d.MessageId]++
		b.messages++
	}
}

// check waits until every booking of want has an event.booked, then
// requires exactly one distinct message per booking (a copy of the same
// message, same ID, is an at-least-once duplicate: counted, allowed) and
// nothing for a booking outside allowed. It returns the duplicates.
func (b *bookedLog) check(t *testing.T, want []string, allowed map[string]bool) (duplicates int) {
	t.Helper()
	brokertest.Eventually(t, 3*wait, func() error {
		if err := b.collect(); err != nil {
			return err
		}
		missing := 0
		for _, id := range want {
			if len(b.byBooking[id]) == 0 {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d bookings have no event.booked on the broker yet", missing, len(want))
		}
		return nil
	})
	for id, msgs := range b.byBooking {
		if !allowed[id] {
			t.Errorf("event.booked for booking %s, which the service does not have", id)
		}
		if len(msgs) != 1 {
			t.Errorf("booking %s was announced by %d different messages %v, want 1", id, len(msgs), msgs)
		}
		for _, n := range msgs {
			duplicates += n - 1
		}
	}
	return duplicates
}

// load books one seat at a time from several goroutines until told to
// stop or the event is sold out, and records every answer.
type load struct {
	mu       sync.Mutex
	created  []string    // IDs of the bookings answered 201
	statuses map[int]int // status -> answers
	failures int         // requests that got no answer
	wg       sync.WaitGroup
	stop     chan struct{}
}

// startLoad starts workers against bookings.
func startLoad(bookings *servicetest.Server, eventID string, workers int) *load {
	l := &load{statuses: map[int]int{}, stop: make(chan struct{})}
	for range workers {
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				status, body, err := bookings.Try("POST", "/events/"+eventID+"/bookings", `{"seats":1,"user_id":"load"}`)
				var b booking
				l.mu.Lock()
				switch {
				case err != nil:
					l.failures++
				case status == http.StatusCreated && json.Unmarshal(body, &b) == nil:
					l.created = append(l.created, b.ID)
				}
				if err == nil {
					l.statuses[status]++
				}
				l.mu.Unlock()
				if status == http.StatusConflict {
					return // sold out
				}
				if err != nil || status != http.StatusCreated {
					<-time.After(20 * time.Millisecond) // the service is down or stuck: do not spin
				}
			}
		})
	}
	return l
}

// await waits until n bookings were answered 201.
func (l *load) await(t *testing.T, n int) {
	t.Helper()
	brokertest.Eventually(t, 2*wait, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(l.created) < n {
			return fmt.Errorf("%d bookings so far, waiting for %d (statuses %v, %d without an answer)", len(l.created), n, l.statuses, l.failures)
		}
		return nil
	})
}

// end stops the workers and returns the 201 bookings.
func (l *load) end() []string {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.created...)
}

// TestRabbitMQStopAppUnderLoad stops the broker's application in the
// middle of concurrent bookings, on a RabbitMQ node of the test's own, and
// starts it again. Every 201 must then have exactly one event.booked on a
// queue of the test's own, none missing, and both services recover by
// themselves: /healthz 200 again, new bookings and locations work.
func TestRabbitMQStopAppUnderLoad(t *testing.T) {
	t.Parallel()
	began := time.Now()
	rabbit := brokertest.PrivateAMQP(t)
	cfg := app.DefaultConfig(app.BookingService)
	cfg.Broker, cfg.AMQPURL = app.AMQP, rabbit.URL
	cfg.Exchange, cfg.Queue = brokertest.Name(t, "events"), brokertest.Name(t, "bookingservice")
	booked := newBookedLog(t, cfg)
	_, bookings := start(t, cfg, app.BookingService, sqlite(t, "bookings"), app.Options{})
	_, events := start(t, cfg, app.EventService, sqlite(t, "events"), app.Options{})
	_, evID := createEvent(t, events, "Outage", contracts.MaxCapacity)
	awaitEvent(t, bookings, evID)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := startLoad(bookings, evID, 8)
	l.await(t, 200)
	if _, err := rabbit.Ctl(ctx, "stop_app"); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	awaitHealth(t, bookings, http.StatusServiceUnavailable)
	awaitHealth(t, events, http.StatusServiceUnavailable)
	l.mu.Lock()
	during := len(l.created)
	l.mu.Unlock()
	if _, err := rabbit.Ctl(ctx, "start_app"); err != nil {
		t.Fatal(err)
	}
	awaitHealth(t, bookings, http.StatusOK)
	awaitHealth(t, events, http.StatusOK)
	recovered := time.Since(stopped)
	l.await(t, during+200)
	created := l.end()

	// Both services work again: a new booking, a new location.
	created = append(created, book(t, bookings, evID, "after", 1).ID)
	events.JSON("POST", "/locations", `{"name":"After the outage"}`, http.StatusCreated, nil)

	all := map[string]bool{}
	for _, id := range bookingIDs(t, bookings, evID) {
		all[id] = true
	}
	for _, id := range created {
		if !all[id] {
			t.Errorf("booking %s was answered 201 but BookingService does not have it", id)
		}
	}
	if v := awaitEvent(t, bookings, evID); v.Booked != len(all) {
		t.Errorf("booked %d, but %d bookings are stored", v.Booked, len(all))
	}
	duplicates := booked.check(t, created, all)
	l.mu.Lock()
	t.Logf("stop_app/start_app under load: %d bookings answered 201 (%d before start_app), statuses %v, %d requests without an answer; "+
		"%d event.booked messages for %d bookings, %d duplicates of the same message; /healthz 200 again %v after stop_app; test took %v",
		len(created), during, l.statuses, l.failures, booked.messages, len(booked.byBooking), duplicates, recovered.Round(100*time.Millisecond), time.Since(began).Round(100*time.Millisecond))
	l.mu.Unlock()
}

// TestKillBookingServiceUnderLoad kills BookingService (the built binary,
// on SQLite) with SIGKILL in the middle of concurrent bookings, starts it
// again on the same file and books on until the event is sold out. No
// booking answered 201 is lost, nothing is oversold, and every booking
// reaches the broker once (the outbox sends what the kill left behind).
func TestKillBookingServiceUnderLoad(t *testing.T) {
	bin := build(t)
	t.Parallel()
	began := time.Now()
	cfg := amqpConfig(t)
	booked := newBookedLog(t, cfg)
	_, events := start(t, cfg, app.EventService, sqlite(t, "events"), app.Options{})
	const capacity = 300
	_, evID := createEvent(t, events, "Kill", capacity)

	args := []string{"-listen", brokertest.ClosedPort(t), "-url", cfg.AMQPURL, "-exchange", cfg.Exchange,
		"-queue", cfg.Queue, "-db", "sqlite:" + filepath.Join(t.TempDir(), "bookings.db")}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	first := startProcess(t, ctx, bin, "bookingservice", args...)
	bookings := servicetest.At(t, first.url)
	awaitEvent(t, bookings, evID)

	l := startLoad(bookings, evID, 8)
	l.await(t, capacity/3)
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-first.readDone
	if err := first.cmd.Wait(); err == nil {
		t.Fatal("the killed BookingService exited with status 0")
	}
	l.mu.Lock()
	atKill := len(l.created)
	l.mu.Unlock()

	second := startProcess(t, ctx, bin, "bookingservice", args...)
	defer func() {
		_ = second.cmd.Process.Signal(syscall.SIGTERM)
		<-second.readDone
		if err := second.cmd.Wait(); err != nil {
			t.Errorf("the restarted BookingService after SIGTERM: %v\n%s", err, second.output())
		}
	}()
	// Every worker stops at its first 409: sold out.
	soldOut := make(chan struct{})
	go func() { l.wg.Wait(); close(soldOut) }()
	select {
	case <-soldOut:
	case <-time.After(3 * wait):
		l.end()
		t.Fatalf("not sold out after %v; statuses %v", 3*wait, l.statuses)
	}
	created := l.end()

	stored := bookingIDs(t, bookings, evID)
	all := map[string]bool{}
	for _, id := range stored {
		all[id] = true
	}
	lost := 0
	for _, id := range created {
		if !all[id] {
			lost++
			t.Errorf("booking %s was answered 201 before the kill but is gone", id)
		}
	}
	v := awaitEvent(t, bookings, evID)
	if v.Booked != capacity || len(stored) != capacity || v.Available != 0 {
		t.Errorf("after the kill and the sell-out: booked %d, %d bookings stored, %d available; want exactly %d, nothing oversold",
			v.Booked, len(stored), v.Available, capacity)
	}
	duplicates := booked.check(t, stored, all)
	l.mu.Lock()
	t.Logf("kill -9 under load: %d bookings answered 201 (%d before the kill), %d stored, %d lost, booked %d of %d; statuses %v, %d requests without an answer; "+
		"%d event.booked messages, %d duplicates of the same message; test took %v",
		len(created), atKill, len(stored), lost, v.Booked, capacity, l.statuses, l.failures, booked.messages, duplicates, time.Since(began).Round(100*time.Millisecond))
	l.mu.Unlock()
}
