//go:build !exercise

package main

import (
	"fmt"
	"slices"

	amqp "github.com/rabbitmq/amqp091-go"
)

// bindExactly binds queue to exchange, an exchange of type kind (direct,
// fanout, topic or headers), so that when every message of msgs is
// published to it, with its key as the routing key and its headers, the
// queue receives exactly the messages whose IDs are in want: each of them,
// and no other. The routing keys are words without * or #, and every
// header value is a string.
//
// When no bindings on that type of exchange can do it, bindExactly binds
// nothing and returns an error that wraps errNotPossible and says why. An
// ID in want that no message has, an unknown type, or a binding the broker
// refuses is another error.
//
// This is the lab's exercise: exercise.go holds the template, and
// go test -tags exercise ./labs/06-exchange-types checks it.
func bindExactly(ch *amqp.Channel, exchange, kind, queue string, msgs []message, want []string) error {
	// Mark the wanted messages; an ID that no message has is a mistake in
	// the call, not a question of routing.
	wanted := map[string]bool{}
	for _, id := range want {
		if !slices.ContainsFunc(msgs, func(m message) bool { return m.id == id }) {
			return fmt.Errorf("binding %s: no message has the ID %q", queue, id)
		}
		wanted[id] = true
	}

	// Work out every binding before making one: when the type cannot do
	// it, bind nothing, or the queue would get some messages after all.
	var bindings []binding
	switch kind {
	case amqp.ExchangeFanout:
		// A fanout exchange ignores keys and arguments: one binding brings
		// every message, no binding brings none, and nothing lies between.
		all, none := true, true
		for _, m := range msgs {
			all, none = all && wanted[m.id], none && !wanted[m.id]
		}
		switch {
		case none:
		case all:
			bindings = append(bindings, binding{key: ""})
		default:
			return fmt.Errorf("%w on a fanout exchange: a bound queue gets every message, and not all are wanted", errNotPossible)
		}

	case amqp.ExchangeDirect, amqp.ExchangeTopic:
		// Both direct and topic route on the routing key alone (a topic
		// pattern without * or # matches that very key only): a binding
		// brings every message with its key, so a key must be wanted for
		// all its messages or for none.
		for _, m := range msgs {
			for _, other := range msgs {
				if wanted[m.id] && !wanted[other.id] && other.key == m.key {
					return fmt.Errorf("%w on a %s exchange: %s and %s share the routing key %s, and only %s is wanted",
						errNotPossible, kind, m.id, other.id, m.key, m.id)
				}
			}
		}
		// One binding per wanted key.
		for _, m := range msgs {
			if wanted[m.id] && !slices.ContainsFunc(bindings, func(b binding) bool { return b.key == m.key }) {
				bindings = append(bindings, binding{key: m.key})
			}
		}

	case amqp.ExchangeHeaders:
		// Headers: one binding per wanted message, with all its headers
		// and x-match all-with-x: plain all would skip every header that
		// starts with x-, x-event-name included. Such a binding brings
		// every message that carries at least those headers with the same
		// values, so each of those must be wanted too.
		for _, m := range msgs {
			if !wanted[m.id] {
				continue
			}
			for _, other := range msgs {
				if wanted[other.id] {
					continue
				}
				carries := true
				for name, value := range m.headers {
					carries = carries && other.headers[name] == value
				}
				if carries {
					return fmt.Errorf("%w on a headers exchange: %s carries every header of %s with the same value, and only %s is wanted",
						errNotPossible, other.id, m.id, m.id)
				}
			}
			args := amqp.Table{"x-match": "all-with-x"}
			for name, value := range m.headers {
				args[name] = value
			}
			bindings = append(bindings, binding{args: args})
		}

	default:
		// Any other type is a mistake.
		return fmt.Errorf("binding %s: unknown exchange type %q", queue, kind)
	}

	// Bind, waiting for the broker's answer each time.
	for _, b := range bindings {
		if err := ch.QueueBind(queue, b.key, exchange, false /* no-wait */, b.args); err != nil {
			return fmt.Errorf("binding %s to %s: %w", queue, exchange, err)
		}
	}
	return nil
}
