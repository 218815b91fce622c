package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labkit"
)

// exercisePatterns and exerciseKeys are more than the program's table: the
// broker decides every cell, and routes must predict each one.
var (
	exercisePatterns = []string{
		"event.created.europe", "event.created.*", "event.*.europe", "*.*.europe",
		"event.#", "event.created.#", "#",
		"#.europe", "event.#.berlin", "*.created.#", "#.created.#", "#.#",
		"*", "*.*", "event.*.*.#", "#.*", "location.#", "event.created.europe.#",
	}
	exerciseKeys = []string{
		"event.created.europe", "event.created.asia", "event.booked.europe",
		"location.created.europe", "event.created", "event.created.europe.berlin", "event",
		"europe", "event.booked", "location.created", "event.created.asia.tokyo", "",
		"created", "event.event.event", "a.b.c.d.e", "event.berlin",
	}
)

// TestExerciseRoutes checks the lab's exercise, routes, against the real
// broker: it binds one queue per pattern to a topic exchange, publishes one
// message per key, and compares every cell of the matrix the broker
// produced with what routes predicts.
func TestExerciseRoutes(t *testing.T) {
	t.Parallel()
	if _, err := routes("#", "event"); errors.Is(err, labkit.ErrTODO) {
		t.Fatal(err)
	}
	rabbit := brokertest.AMQP(t)
	ch := openChannel(t, rabbit.URL)
	exchange := brokertest.Name(t, "wildcards")
	if err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic,
		false, // durable
		true,  // auto-delete: goes with its last queue
		false, // internal
		false, // no-wait
		nil,   // args
	); err != nil {
		t.Fatalf("declaring exchange %s: %v", exchange, err)
	}
	queues := make([]string, len(exercisePatterns))
	for i, pattern := range exercisePatterns {
		q, err := ch.QueueDeclare("",
			false, // durable
			true,  // auto-delete
			true,  // exclusive: gone with the test's connection
			false, // no-wait
			nil,   // args
		)
		if err != nil {
			t.Fatalf("declaring the queue for %s: %v", pattern, err)
		}
		if err := ch.QueueBind(q.Name, pattern, exchange, false /* no-wait */, nil); err != nil {
			t.Fatalf("binding %s with %s: %v", q.Name, pattern, err)
		}
		queues[i] = q.Name
	}

	// Publish one message per key, confirmed: once confirmed, a message is
	// in every queue it was routed to.
	if err := ch.Confirm(false /* no-wait */); err != nil {
		t.Fatalf("enabling confirms: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, key := range exerciseKeys {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key,
			false, // mandatory: some keys match no pattern, and that is fine
			false, // immediate
			amqp.Publishing{ContentType: "text/plain", Body: []byte(key)})
		if err != nil {
			t.Fatalf("publishing %q: %v", key, err)
		}
		if acked, err := dc.WaitContext(ctx); err != nil || !acked {
			t.Fatalf("confirm of %q: acked %t, %v", key, acked, err)
		}
	}

	// The broker's matrix, cell by cell against routes.
	wrong := 0
	for i, pattern := range exercisePatterns {
		var got []string
		for {
			d, ok, err := ch.Get(queues[i], true /* auto-ack */)
			if err != nil {
				t.Fatalf("reading the queue for %s: %v", pattern, err)
			}
			if !ok {
				break
			}
			got = append(got, d.RoutingKey)
		}
		for _, key := range exerciseKeys {
			delivered := slices.Contains(got, key)
			predicted, err := routes(pattern, key)
			var problem string
			switch {
			case err != nil:
				problem = "returned an error for a pattern and key the broker accepts: " + err.Error()
			case predicted && !delivered:
				problem = "= true, but the broker did not deliver the message to the queue bound with " + pattern
			case !predicted && delivered:
				problem = "= false, but the broker delivered the message to the queue bound with " + pattern
			default:
				continue
			}
			if wrong++; wrong <= 10 {
				t.Errorf("routes(%q, %q) %s", pattern, key, problem)
			}
		}
	}
	if wrong > 0 {
		t.Errorf("routes got %d of %d cells wrong (at most 10 are listed)", wrong, len(exercisePatterns)*len(exerciseKeys))
	}

	// Longer than 255 bytes: no broker can receive it, so routes says so.
	long := strings.Repeat("event.", 43) // 258 bytes
	if _, err := routes("#", long); err == nil {
		t.Errorf("routes(%q, a key of %d bytes) returned no error; AMQP carries a routing key in at most 255 bytes", "#", len(long))
	}
	if _, err := routes(long, "event"); err == nil {
		t.Errorf("routes(a pattern of %d bytes, %q) returned no error; AMQP carries a binding pattern in at most 255 bytes", len(long), "event")
	}
}
