package live

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/capstone/bookingservice"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/rabbitmq"
	"example.com/myevents/contracts"
)

// AMQP watches RabbitMQ on a connection of its own, beside the services.
// Two exclusive, auto-deleted tap queues get a copy of what passes: one
// bound to the events exchange with "#" (every event), one bound to
// BookingService's dead-letter exchange (every dead-lettered copy, with
// the x-dlq-* headers that say why). They vanish with the connection. The
// depths come from passive queue declares, which read a queue's counters
// without changing it; no management plugin is needed.
//
// The tap's binding makes every event routable, so on an exchange without
// BookingService's queue an emit would no longer come back as unroutable.
// BookingService declares its queue before EventService starts, so in the
// demo that never arises.
type AMQP struct {
	url, exchange, queue, title string
	sink                        func(Record)

	mu       sync.Mutex // guards what follows
	conn     *amqp.Connection
	ops      *amqp.Channel // passive declares and the poison, one call at a time
	lastErr  string
	poisoned int

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// WatchAMQP connects to RabbitMQ at url and taps exchange and the
// dead-letter exchange of BookingService's queue (both must exist),
// handing every message to sink. When the connection drops it connects
// again. title names the broker on the page.
func WatchAMQP(url, exchange, queue, title string, sink func(Record)) (*AMQP, error) {
	a := &AMQP{url: url, exchange: exchange, queue: queue, title: title, sink: sink, stop: make(chan struct{})}
	conn, deliveries, err := a.connect()
	if err != nil {
		return nil, err
	}
	a.wg.Go(func() { a.run(conn, deliveries) })
	return a, nil
}

// connect opens the connection and the tap queues and starts consuming.
func (a *AMQP) connect() (*amqp.Connection, []<-chan amqp.Delivery, error) {
	cfg := amqp.Config{Properties: amqp.NewConnectionProperties(), Heartbeat: 10 * time.Second}
	cfg.Properties.SetClientConnectionName("myevents live view")
	conn, err := amqp.DialConfig(a.url, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting the live view to RabbitMQ: %w", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		_ = conn.Close()
		return nil, nil, fmt.Errorf("opening the live view's tap channel: %w", err)
	}
	var deliveries []<-chan amqp.Delivery
	for _, bind := range []struct{ exchange, key string }{
		{a.exchange, "#"},
		{rabbitmq.DeadLetterExchange(a.queue), ""},
	} {
		q, err := ch.QueueDeclare("",
			false, // durable: a tap lives as long as its connection
			true,  // autoDelete
			true,  // exclusive
			false, // noWait
			nil)
		if err == nil {
			err = ch.QueueBind(q.Name, bind.key, bind.exchange, false /* noWait */, nil)
		}
		var d <-chan amqp.Delivery
		if err == nil {
			d, err = ch.Consume(q.Name, "",
				true,  // autoAck: the tap's copies protect nothing
				true,  // exclusive
				false, // noLocal
				false, // noWait
				nil)
		}
		if err != nil {
			_ = conn.Close()
			return nil, nil, fmt.Errorf("tapping exchange %s: %w", bind.exchange, err)
		}
		deliveries = append(deliveries, d)
	}
	a.mu.Lock()
	a.conn, a.ops, a.lastErr = conn, nil, ""
	a.mu.Unlock()
	return conn, deliveries, nil
}

// run hands deliveries to the sink until Close, connecting again after
// the connection drops.
func (a *AMQP) run(conn *amqp.Connection, deliveries []<-chan amqp.Delivery) {
	for {
		var wg sync.WaitGroup
		for i, d := range deliveries {
			dead := i == 1
			wg.Go(func() {
				for m := range d {
					a.sink(a.record(m, dead))
				}
			})
		}
		closed := conn.NotifyClose(make(chan *amqp.Error, 1))
		select {
		case <-a.stop:
			_ = conn.Close()
			wg.Wait()
			return
		case err := <-closed:
			wg.Wait()
			a.mu.Lock()
			a.lastErr = fmt.Sprintf("the live view lost its connection: %v; connecting again", err)
			a.mu.Unlock()
		}
		for {
			select {
			case <-a.stop:
				return
			case <-time.After(time.Second):
			}
			var err error
			if conn, deliveries, err = a.connect(); err == nil {
				break
			}
			a.mu.Lock()
			a.lastErr = err.Error()
			a.mu.Unlock()
		}
	}
}

// record describes one delivery of a tap queue.
func (a *AMQP) record(d amqp.Delivery, dead bool) Record {
	r := Record{Exchange: d.Exchange, RoutingKey: d.RoutingKey, MessageID: d.MessageId, Emitted: time.Now()}
	name := rabbitmq.EventNameOf(d.Headers)
	if dead {
		reason, _ := d.Headers[msgqueue.HeaderReason].(string)
		msg, _ := d.Headers[msgqueue.HeaderError].(string)
		if reason == "" {
			reason = "dead-lettered by the broker" // a rejected message, or past x-delivery-limit
		}
		r.Name, r.Queue = name, rabbitmq.DeadLetterQueue(a.queue)
		r.DeadLetter = &DeadLetter{Reason: reason, Error: msg, MessageID: d.MessageId}
		r.Summary = "dead-lettered copy: " + reason
		return r
	}
	r.Queue = "no queue of BookingService"
	if slices.Contains(bookingservice.Names(), d.RoutingKey) {
		r.Queue = a.queue
	}
	ev, err := contracts.Decode(name, d.Body)
	r.decode(name, ev, err)
	return r
}

// channel returns the channel for passive declares and the poison,
// opening one if needed; a.mu is held.
func (a *AMQP) channel() (*amqp.Channel, error) {
	if a.ops != nil && !a.ops.IsClosed() {
		return a.ops, nil
	}
	if a.conn == nil || a.conn.IsClosed() {
		return nil, errors.New("not connected to RabbitMQ")
	}
	ch, err := a.conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.Confirm(false /* noWait */); err != nil {
		_ = ch.Close()
		return nil, err
	}
	a.ops = ch
	return ch, nil
}

// depth reads a queue's counters with a passive declare, which fails (and
// closes the channel) if the queue does not exist; a.mu is held.
func (a *AMQP) depth(name string) (amqp.Queue, error) {
	ch, err := a.channel()
	if err != nil {
		return amqp.Queue{}, err
	}
	q, err := rabbitmq.InspectQueue(ch, name)
	if err != nil {
		a.ops = nil
	}
	return q, err
}

// View reads the depths of BookingService's queue and of its dead-letter
// queue.
func (a *AMQP) View(context.Context) BrokerView {
	a.mu.Lock()
	defer a.mu.Unlock()
	v := BrokerView{Kind: "amqp", Title: a.title, Exchange: a.exchange, Up: a.lastErr == "", Error: a.lastErr}
	for _, name := range []string{a.queue, rabbitmq.DeadLetterQueue(a.queue)} {
		qv := QueueView{Name: name, DeadLetter: name != a.queue}
		q, err := a.depth(name)
		if err != nil {
			qv.Error = err.Error()
		}
		qv.Ready, qv.Consumers = q.Messages, q.Consumers
		v.Queues = append(v.Queues, qv)
	}
	return v
}

// Waiting is the number of messages ready in BookingService's queue.
func (a *AMQP) Waiting(context.Context) (int64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	q, err := a.depth(a.queue)
	return int64(q.Messages), err
}

// Poison publishes an event.booked of 5000 seats, more than a booking may
// have, as EventService would publish an event, and waits for the
// broker's confirm. The listener dead-letters it without handing it to
// BookingService.
func (a *AMQP) Poison(ctx context.Context, eventID string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ch, err := a.channel()
	if err != nil {
		return "", err
	}
	a.poisoned++
	body, _ := poisonPayload(a.poisoned, eventID)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, a.exchange, contracts.EventBookedName,
		true,  // mandatory: a poison nobody receives would teach nothing
		false, // immediate
		amqp.Publishing{
			Headers:      amqp.Table{rabbitmq.HeaderEventName: contracts.EventBookedName},
			ContentType:  "application/json",
			DeliveryMode: amqp.Persistent,
			MessageId:    fmt.Sprintf("POISON-%d", a.poisoned),
			Body:         body,
		})
	if err != nil {
		return "", fmt.Errorf("publishing the poison message: %w", err)
	}
	if ok, err := dc.WaitContext(ctx); err != nil || !ok {
		return "", fmt.Errorf("the broker did not confirm the poison message (%v)", err)
	}
	return fmt.Sprintf("a poison message, event.booked of 5000 seats (a booking may have 1 to 1000), with routing key %s to exchange %s",
		contracts.EventBookedName, a.exchange), nil
}

// Close stops watching and closes the connection; calling it again does
// nothing.
func (a *AMQP) Close() error {
	a.once.Do(func() { close(a.stop) })
	a.wg.Wait()
	return nil
}
