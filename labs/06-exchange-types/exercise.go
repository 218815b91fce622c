//go:build exercise

package main

import (
	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/labs/labkit"
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
// Exercise: write it, following the steps below. Check it with
//
//	go test -tags exercise ./labs/06-exchange-types
//
// and see it in the program with go run -tags exercise ./labs/06-exchange-types.
// The hints are in docs/exercises.md; the answer is in solution.go.
func bindExactly(ch *amqp.Channel, exchange, kind, queue string, msgs []message, want []string) error {
	// Mark the wanted messages; an ID that no message has is a mistake in
	// the call, not a question of routing.

	// Work out every binding before making one: when the type cannot do
	// it, bind nothing, or the queue would get some messages after all.

	// A fanout exchange ignores keys and arguments: one binding brings
	// every message, no binding brings none, and nothing lies between.

	// Both direct and topic route on the routing key alone (a topic
	// pattern without * or # matches that very key only): a binding brings
	// every message with its key, so a key must be wanted for all its
	// messages or for none.

	// One binding per wanted key.

	// Headers: one binding per wanted message, with all its headers and
	// x-match all-with-x: plain all would skip every header that starts
	// with x-, x-event-name included. Such a binding brings every message
	// that carries at least those headers with the same values, so each of
	// those must be wanted too.

	// Any other type is a mistake.

	// Bind, waiting for the broker's answer each time.

	return labkit.TODO("bindExactly", "choose the bindings that bring exactly the wanted messages, or say why this type of exchange cannot")
}
