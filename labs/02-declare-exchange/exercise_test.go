package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labkit"
)

// TestExerciseDeclareExchange checks the lab's exercise, declareExchange,
// against the real broker: the exchange it leaves is exactly a durable topic
// exchange, not auto-delete, not internal; declaring again is fine; and a
// name taken by an exchange of another kind gives an error that wraps
// errInequivalent and the broker's 406, on a channel the broker closed,
// and that exchange stays as it was.
func TestExerciseDeclareExchange(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	conn := openConn(t, rabbit.URL)
	name := brokertest.Name(t, "events")
	t.Cleanup(func() { cleanupExchange(t, rabbit.URL, name) })

	// A new name: the exchange is created.
	ch := channel(t, conn)
	err := declareExchange(ch, name)
	if errors.Is(err, labkit.ErrTODO) {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatalf("declareExchange(%q) on a name nobody uses: %v", name, err)
	}
	brokertest.Eventually(t, 5*time.Second, func() error {
		return channel(t, conn).ExchangeDeclarePassive(name, amqp.ExchangeTopic, true, false, false, false, nil)
	})
	// The broker holds exactly what MyEvents needs: an active declaration
	// with the full description is accepted. Otherwise the broker's 406
	// names the argument that differs.
	err = channel(t, conn).ExchangeDeclare(name,
		amqp.ExchangeTopic, // type
		true,               // durable
		false,              // auto-delete
		false,              // internal
		false,              // no-wait
		nil,                // args
	)
	if err != nil {
		t.Fatalf("the broker holds exchange %q, but not as a durable topic exchange, not auto-delete, not internal: it refused that description with %v", name, err)
	}

	// The same name again: the broker says ok, and the channel stays open.
	if err := declareExchange(ch, name); err != nil {
		t.Fatalf("declaring %q a second time: %v; declaring what exists as described must succeed", name, err)
	}
	if ch.IsClosed() {
		t.Fatalf("after declaring %q twice the channel is closed; the broker accepts a declaration of what exists as described", name)
	}

	// A name taken by a fanout exchange: the broker refuses with 406 and
	// closes the channel, not the connection; the fanout stays.
	taken := brokertest.Name(t, "fanout")
	t.Cleanup(func() { cleanupExchange(t, rabbit.URL, taken) })
	if err := channel(t, conn).ExchangeDeclare(taken, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		t.Fatalf("declaring %q as fanout: %v", taken, err)
	}
	refused := channel(t, conn)
	closing := refused.NotifyClose(make(chan *amqp.Error, 1))
	err = declareExchange(refused, taken)
	if err == nil {
		// Find out what happened before saying what is wrong: was the
		// fanout replaced, or did the broker refuse after all?
		if err := channel(t, conn).ExchangeDeclare(taken, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
			t.Fatalf("declareExchange(%q) returned nil, and %q is no longer the fanout exchange the test declared (%v): you replaced an existing exchange, which in real life belongs to another team or service; never delete an exchange to declare yours: declare it, and let the broker's 406 tell you that it exists otherwise", taken, taken, err)
		}
		select {
		case e := <-closing:
			t.Fatalf("declareExchange(%q) returned nil, but %q is a fanout exchange: the broker refused (%v) and closed the channel afterwards; wait for its answer (no-wait off), and return the refusal as an error", taken, taken, e)
		case <-time.After(5 * time.Second):
			t.Fatalf("declareExchange(%q) returned nil, though %q is a fanout exchange, and the broker refused nothing within 5 s: declare a durable topic exchange with ExchangeDeclare (not ExchangeDeclarePassive), so that the broker checks the existing one against it", taken, taken)
		}
	}
	var amqpErr *amqp.Error
	if !errors.As(err, &amqpErr) || amqpErr.Code != amqp.PreconditionFailed {
		t.Errorf("declareExchange(%q) returned %q, which does not wrap the broker's *amqp.Error 406 PRECONDITION_FAILED: wrap it with %%w", taken, err)
	}
	if !errors.Is(err, errInequivalent) {
		t.Errorf("declareExchange(%q) returned %q; the broker refused with 406, so want an error that wraps errInequivalent (fmt.Errorf with %%w)", taken, err)
	}
	if !strings.Contains(err.Error(), taken) {
		t.Errorf("declareExchange(%q) returned %q, which does not name the exchange", taken, err)
	}
	if !refused.IsClosed() {
		t.Errorf("after the 406 the channel is still open; the broker closes a channel that made a refused declaration")
	}
	if conn.IsClosed() {
		t.Fatalf("after the 406 the connection is closed; a refused declaration closes only its channel")
	}
	if err := channel(t, conn).ExchangeDeclare(taken, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		t.Errorf("%q is no longer the fanout exchange we declared: %v; a declaration never changes an existing exchange", taken, err)
	}

	// Any other failure is not a 406: the closed channel refuses at once
	// (504), and that is no inequivalent exchange.
	err = declareExchange(refused, name)
	switch {
	case err == nil:
		t.Errorf("declareExchange on a closed channel returned nil")
	case errors.Is(err, errInequivalent):
		t.Errorf("declareExchange on a closed channel returned %q, which wraps errInequivalent; only code 406 means an exchange with other arguments (this was %v)", err, amqp.ErrClosed)
	case !errors.Is(err, amqp.ErrClosed):
		t.Errorf("declareExchange on a closed channel returned %q, which does not wrap the library's %v", err, amqp.ErrClosed)
	case !strings.Contains(err.Error(), name):
		t.Errorf("declareExchange on a closed channel returned %q, which does not name the exchange %q", err, name)
	}
}
