package rabbitmq_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"example.com/myevents/capstone/msgqueue/rabbitmq"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// handledOnce publishes a booking called id and waits until c counted it.
func (e *env) handledOnce(t *testing.T, c *callCounter, id string) {
	t.Helper()
	body, _ := json.Marshal(booking(id))
	e.publish(t, raw{id, contracts.EventBookedName, contracts.EventBookedName, body})
	brokertest.Eventually(t, 15*time.Second, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.calls[id] != 1 {
			return fmt.Errorf("%s handled %d times, want once", id, c.calls[id])
		}
		return nil
	})
}

// listening starts a listener on the env's queue that counts what it
// handles, and checks that it handles a first booking.
func (e *env) listening(t *testing.T, opts ...rabbitmq.Option) (*rabbitmq.Listener, *callCounter) {
	t.Helper()
	l := e.mustListener(t, contracts.Names(), opts...)
	c := &callCounter{}
	listenInBackground(t, l, c.handler(func(string) error { return nil }))
	e.handledOnce(t, c, "before")
	return l, c
}

// consumers returns how many consumers the queue has (an error if it is
// missing).
func consumers(url, queue string) (int, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	q, err := rabbitmq.InspectQueue(ch, queue)
	return q.Consumers, err
}

// TestDeletedQueueComesBack: someone deletes the service's queue while it
// listens (an operator, a clean-up script). The broker cancels the
// consumer; the listener declares its topology again and consumes the new
// queue, so events published from then on are handled. It used to retry
// consuming the missing queue for ever, while its Health said nothing.
func TestDeletedQueueComesBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l, c := e.listening(t)

	ch := brokertest.AdminChannel(t, e.rabbit.URL)
	if _, err := ch.QueueDelete(e.queue, false /* if-unused */, false /* if-empty */, false /* no-wait */); err != nil {
		t.Fatal(err)
	}
	brokertest.Eventually(t, 15*time.Second, func() error {
		n, err := consumers(e.rabbit.URL, e.queue)
		if err != nil || n != 1 {
			return fmt.Errorf("queue %s: %d consumer(s), %v; want it back with the listener's", e.queue, n, err)
		}
		return nil
	})
	e.handledOnce(t, c, "after")
	if err := l.Health(context.Background()); err != nil {
		t.Errorf("Health after the queue came back: %v", err)
	}
}

// TestListenerThatCannotConsumeSaysSo: the service's queue is deleted and
// someone declares a queue of the same name with other arguments (a
// classic queue). The listener cannot declare its own, so it cannot make
// progress: Health says so, naming the queue. Once the other queue is
// gone, the listener declares its own and Health is nil again.
func TestListenerThatCannotConsumeSaysSo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l, c := e.listening(t)

	// The listener declares its queue again as soon as it is gone: delete
	// it and declare the classic one until the classic one wins.
	brokertest.Eventually(t, 15*time.Second, func() error {
		ch := brokertest.AdminChannel(t, e.rabbit.URL)
		if _, err := ch.QueueDelete(e.queue, false, false, false); err != nil {
			return err
		}
		_, err := ch.QueueDeclare(e.queue, true, false, false, false, nil)
		return err
	})
	ch := brokertest.AdminChannel(t, e.rabbit.URL)
	brokertest.Eventually(t, 15*time.Second, func() error {
		err := l.Health(context.Background())
		if err == nil || !strings.Contains(err.Error(), e.queue) {
			return fmt.Errorf("Health = %v, want an error naming queue %s", err, e.queue)
		}
		return nil
	})
	t.Logf("Health while the queue cannot be declared: %v", l.Health(context.Background()))

	if _, err := ch.QueueDelete(e.queue, false, false, false); err != nil {
		t.Fatal(err)
	}
	brokertest.Eventually(t, 15*time.Second, func() error { return l.Health(context.Background()) })
	e.handledOnce(t, c, "after")
}

// TestDeletedExchangeComesBack: deleting the exchange takes the queue's
// bindings with it, and nothing tells the consumer: the queue just stops
// getting events. The listener declares its topology again every so
// often (here every 100 ms), so the exchange and the bindings come back
// and events published from then on are handled. They used to stay
// gone, the service hearing of nothing new, until it was restarted.
func TestDeletedExchangeComesBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, c := e.listening(t, rabbitmq.WithTopologyCheck(100*time.Millisecond))

	ch := brokertest.AdminChannel(t, e.rabbit.URL)
	if err := ch.ExchangeDelete(e.exchange, false /* if-unused */, false /* no-wait */); err != nil {
		t.Fatal(err)
	}
	// The exchange comes back before its bindings, and a message published
	// in between goes nowhere: publish one probe after another until one
	// is handled.
	probes := 0
	brokertest.Eventually(t, 15*time.Second, func() error {
		c.mu.Lock()
		handled := 0
		for id := range c.calls {
			if strings.HasPrefix(id, "after-") {
				handled++
			}
		}
		c.mu.Unlock()
		if handled > 0 {
			return nil
		}
		probes++
		body, _ := json.Marshal(booking(fmt.Sprintf("after-%d", probes)))
		if err := publishRaw(e.rabbit.URL, e.exchange, contracts.EventBookedName, amqp.Publishing{
			Headers: amqp.Table{rabbitmq.HeaderEventName: contracts.EventBookedName}, MessageId: fmt.Sprintf("after-%d", probes), Body: body}); err != nil {
			return fmt.Errorf("publishing probe %d: %w", probes, err)
		}
		return fmt.Errorf("none of %d probes handled yet", probes)
	})
}
