package main

// EventService's side of the lab: it answers the questions on its request
// queue, and announces events (step 5's publish/subscribe contrast). The
// story in main.go runs it; read that first.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/contracts"
)

// catalogue is EventService's own data: the seats of each event, and how
// long it takes to look them up (a stand-in for a slow database).
var catalogue = map[string]struct {
	seats int
	work  time.Duration
}{
	"ev-1": {seats: 500, work: 200 * time.Millisecond},
	"ev-2": {seats: 300},
	"ev-3": {seats: 1200, work: 100 * time.Millisecond},
	"ev-4": {seats: 800, work: 300 * time.Millisecond},
}

// served is what EventService did with one request.
type served struct {
	id         string    // the request's correlation id
	replyTo    string    // the request's reply_to, as EventService saw it
	consumers  int       // direct reply-to: consumers of reply_to when checked
	callerGone bool      // direct reply-to: reply_to was gone, so no reply was sent
	checked    string    // direct reply-to: what the passive declare said
	returned   string    // the reply came back unroutable, such as "312 NO_ROUTE"
	at         time.Time // when the reply was confirmed (or skipped)
}

// server is EventService's side: it consumes the request queue and
// answers every question on the queue its reply_to names.
type server struct {
	conn  *amqp.Connection
	queue string

	// answering orders the handlers' replies and acks against stop's
	// close of the request channel. A handler with its answer ready
	// takes it for reading, if its context is still live, and holds it
	// until it has replied and acked: the caller may have the reply
	// before EventService has its confirm, so a stop in between must
	// wait for the ack, or the answered request goes back to the queue
	// and is answered twice. stop cancels the handlers (lookups in
	// progress give up, unacked), then takes it to close the channel.
	// An ack sent while the channel is closing reaches a channel the
	// broker has closed, and the broker closes the whole connection
	// (504 CHANNEL_ERROR - expected 'channel.open').
	answering sync.RWMutex

	mu      sync.Mutex               // guards what follows
	consume *amqp.Channel            // consumes the requests; nil while stopped
	cancel  context.CancelFunc       // ends the handlers in flight
	running sync.WaitGroup           // the consume loop and the handlers
	replyCh *amqp.Channel            // publishes the replies, in confirm mode
	returns chan amqp.Return         // what the broker handed back
	back    map[string]string        // returns read from returns, by correlation id
	done    map[string]served        // what was done with each request, by correlation id
	changed chan struct{}            // closed and replaced whenever done changes
	held    map[string]chan struct{} // lookups that wait for release, by event id
}

func newServer(conn *amqp.Connection, queue string) *server {
	return &server{conn: conn, queue: queue, back: map[string]string{}, done: map[string]served{}, changed: make(chan struct{})}
}

// start opens EventService's channels and consumes the request queue.
func (s *server) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.replyCh == nil {
		// Replies are published with mandatory and confirms, so that
		// EventService learns when one could not be routed (lab 03).
		ch, err := s.conn.Channel()
		if err != nil {
			return fmt.Errorf("opening EventService's reply channel: %w", err)
		}
		if err := ch.Confirm(false /* no-wait */); err != nil {
			return fmt.Errorf("enabling publisher confirms: %w", err)
		}
		// Room for a return per reply in flight (prefetch 20), so that
		// the library never waits to hand one over.
		s.replyCh, s.returns = ch, ch.NotifyReturn(make(chan amqp.Return, 64))
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return fmt.Errorf("opening EventService's request channel: %w", err)
	}
	// Up to twenty requests at once, each handled in its own goroutine:
	// the replies leave in the order the lookups finish.
	if err := ch.Qos(20, 0 /* prefetch size */, false /* global */); err != nil {
		_ = ch.Close()
		return fmt.Errorf("setting prefetch: %w", err)
	}
	deliveries, err := ch.Consume(s.queue, "",
		false, // auto-ack: off, a request is acked once answered
		false, // exclusive
		false, // no-local
		false, // no-wait
		nil,   // args
	)
	if err != nil {
		_ = ch.Close()
		return fmt.Errorf("consuming queue %s: %w", s.queue, err)
	}
	hctx, cancel := context.WithCancel(ctx)
	s.consume, s.cancel = ch, cancel
	s.running.Add(1)
	go func() {
		defer s.running.Done()
		for d := range deliveries {
			s.running.Add(1)
			go func() {
				defer s.running.Done()
				s.handle(hctx, d)
			}()
		}
	}()
	return nil
}

// stop closes the request channel (requests not yet acked go back to the
// queue) and waits for the handlers. EventService is down until start.
func (s *server) stop() {
	s.mu.Lock()
	ch, cancel := s.consume, s.cancel
	s.consume, s.cancel = nil, nil
	s.mu.Unlock()
	if ch == nil {
		return
	}
	cancel()
	// Wait for the handlers that are answering; no other starts now:
	// their context is done.
	s.answering.Lock()
	_ = ch.Close()
	s.answering.Unlock()
	s.running.Wait()
}

// handle answers one request: look the event up, check that a direct
// reply-to caller is still there, reply, and ack the request.
func (s *server) handle(ctx context.Context, d amqp.Delivery) {
	r := served{id: d.CorrelationId, replyTo: d.ReplyTo}
	var q question
	var rep reply
	var work time.Duration
	if err := json.Unmarshal(d.Body, &q); err != nil {
		rep.Error = "malformed question"
	} else if e, ok := catalogue[q.EventID]; !ok {
		rep = reply{EventID: q.EventID, Error: "unknown event"}
	} else {
		// The lookup takes its time.
		work = e.work
		select {
		case <-time.After(work):
		case <-ctx.Done():
			return // not acked: the broker requeues it when the channel closes
		}
		if !s.waitRelease(ctx, q.EventID) {
			return
		}
		rep = reply{EventID: q.EventID, Seats: e.seats}
	}
	// The answer is ready: from here the handler finishes, reply and
	// ack, even if stop comes meanwhile (it waits), within replyTimeout.
	if !s.beginAnswer(ctx) {
		return // stopping: not acked, the broker requeues it
	}
	defer s.answering.RUnlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), replyTimeout)
	defer cancel()
	switch {
	case d.ReplyTo == "":
		// Nobody to answer: a caller that did not say where.
	case work > 0 && strings.HasPrefix(d.ReplyTo, directReplyTo+"."):
		// Direct reply-to, after a lookup that took time: is the caller
		// still there? The mandatory flag cannot tell (see stepDirect); a
		// passive declare can, for a channel and two round trips.
		r.consumers, r.checked = s.callerPresent(d.ReplyTo)
		if r.consumers == 0 {
			r.callerGone = true
			break
		}
		r.returned = s.reply(ctx, d, rep)
	default:
		r.returned = s.reply(ctx, d, rep)
	}
	_ = d.Ack(false /* multiple */)
	r.at = time.Now()
	s.record(r)
}

// replyTimeout bounds a handler's reply and ack once its answer is ready,
// and so how long stop can wait for it.
const replyTimeout = waitTimeout

// beginAnswer takes s.answering for reading unless ctx is done (stop is
// closing the channel: the broker requeues the request), and reports
// whether it did. The caller releases it after its ack.
func (s *server) beginAnswer(ctx context.Context) bool {
	s.answering.RLock()
	if ctx.Err() != nil {
		s.answering.RUnlock()
		return false
	}
	return true
}

// reply publishes the reply to the default exchange with the request's
// reply_to as routing key and its correlation id, mandatory, and waits for
// the confirm. It returns why the broker handed it back, or "".
func (s *server) reply(ctx context.Context, d amqp.Delivery, rep reply) string {
	body, err := json.Marshal(rep)
	if err != nil {
		return "not sent: " + err.Error()
	}
	dc, err := s.replyCh.PublishWithDeferredConfirmWithContext(ctx, "", d.ReplyTo,
		true,  // mandatory: hand it back if no queue takes it
		false, // immediate
		amqp.Publishing{ContentType: "application/json", CorrelationId: d.CorrelationId, Body: body})
	if err != nil {
		return "not sent: " + err.Error()
	}
	if _, err := dc.WaitContext(ctx); err != nil {
		return "not confirmed: " + err.Error()
	}
	return s.returned(d.CorrelationId)
}

// returned says why the broker handed back the reply with this
// correlation id, or "". The broker sends a return before the ack of the
// same message, and the library hands it to the buffered s.returns before
// it processes the ack; so once the confirm is in, the return is either
// waiting in s.returns or was moved to s.back by another handler.
func (s *server) returned(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		select {
		case ret := <-s.returns:
			s.back[ret.CorrelationId] = fmt.Sprintf("%d %s", ret.ReplyCode, ret.ReplyText)
		default:
			why := s.back[id]
			delete(s.back, id)
			return why
		}
	}
}

// callerPresent declares a direct reply-to name passively, on a channel
// of its own (a 404 closes the channel), and returns its consumer count
// (0 when the declare failed) and what the broker said.
func (s *server) callerPresent(replyTo string) (int, string) {
	ch, err := s.conn.Channel()
	if err != nil {
		return 0, "no channel: " + err.Error()
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(replyTo,
		false, // durable
		false, // auto-delete
		false, // exclusive
		false, // no-wait
		nil,   // args
	)
	if err != nil {
		var amqpErr *amqp.Error
		if errors.As(err, &amqpErr) && amqpErr.Code == amqp.NotFound {
			return 0, "404 NOT_FOUND, the caller is gone"
		}
		return 0, brokerSays(err)
	}
	return q.Consumers, fmt.Sprintf("%d consumer", q.Consumers)
}

// hold makes every lookup of eventID wait, after its work, until release
// is called. The steps whose caller goes away use it: the lookup is
// meant to outlast the caller, and on a slow machine closing a
// connection can take longer than the lookup's work.
func (s *server) hold(eventID string) (release func()) {
	gate := make(chan struct{})
	s.mu.Lock()
	if s.held == nil {
		s.held = map[string]chan struct{}{}
	}
	s.held[eventID] = gate
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.held, eventID)
			s.mu.Unlock()
			close(gate)
		})
	}
}

// waitRelease waits while eventID is held; false when ctx ended first.
func (s *server) waitRelease(ctx context.Context, eventID string) bool {
	s.mu.Lock()
	gate := s.held[eventID]
	s.mu.Unlock()
	if gate == nil {
		return true
	}
	select {
	case <-gate:
		return true
	case <-ctx.Done():
		return false
	}
}

// record keeps what EventService did with a request and wakes await.
func (s *server) record(r served) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done[r.id] = r
	close(s.changed)
	s.changed = make(chan struct{})
}

// await waits until EventService has handled the request with this
// correlation id.
func (s *server) await(ctx context.Context, id string) (served, error) {
	timeout := time.After(waitTimeout)
	for {
		s.mu.Lock()
		r, ok := s.done[id]
		changed := s.changed
		s.mu.Unlock()
		if ok {
			return r, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return served{}, ctx.Err()
		case <-timeout:
			return served{}, fmt.Errorf("EventService did not handle %s within %v", id, waitTimeout)
		}
	}
}

// awaitAll waits until EventService has handled all these requests.
func (s *server) awaitAll(ctx context.Context, ids []string) error {
	for _, id := range ids {
		if _, err := s.await(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// publishEvent publishes an event as the capstone does (JSON, the
// x-event-name header, persistent), straight to a queue through the
// default exchange, and waits for the broker's confirm.
func publishEvent(ctx context.Context, conn *amqp.Connection, queue string, ev contracts.Event) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", ev.EventName(), err)
	}
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("opening a channel to publish on: %w", err)
	}
	defer ch.Close()
	if err := ch.Confirm(false /* no-wait */); err != nil {
		return fmt.Errorf("enabling publisher confirms: %w", err)
	}
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue,
		true,  // mandatory
		false, // immediate
		amqp.Publishing{
			Headers:      amqp.Table{"x-event-name": ev.EventName()},
			ContentType:  "application/json",
			DeliveryMode: amqp.Persistent,
			MessageId:    ev.EventName() + "-" + ev.PartitionKey(),
			Body:         body,
		})
	if err != nil {
		return fmt.Errorf("publishing %s: %w", ev.EventName(), err)
	}
	if acked, err := dc.WaitContext(ctx); err != nil || !acked {
		return fmt.Errorf("the broker did not confirm %s (acked %t): %v", ev.EventName(), acked, err)
	}
	return nil
}
