//go:build exercise

package main

import (
	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/labs/labkit"
)

// declareExchange makes sure that the exchange name exists as MyEvents
// needs it: a durable topic exchange, not auto-delete, not internal,
// without arguments. It creates the exchange, or checks that the one of
// that name is exactly that, and waits for the broker's answer.
//
// When an exchange of that name exists with other arguments, the broker
// refuses with 406 PRECONDITION_FAILED and closes ch (the connection stays
// open): the error then wraps errInequivalent and the broker's *amqp.Error,
// so that the caller can tell a contradicting declaration from any other
// failure. Every error names the exchange. (errInequivalent is in
// main.go.)
//
// Exercise: write it, following the steps below. Check it with
//
//	go test -tags exercise ./labs/02-declare-exchange
//
// and see it in the program with go run -tags exercise ./labs/02-declare-exchange.
// The hints are in docs/exercises.md; the answer is in solution.go.
func declareExchange(ch *amqp.Channel, name string) error {
	// Declare the exchange, and label every positional argument:
	//   type:        topic, to route by matching the routing key against
	//                binding patterns.
	//   durable:     on, so the exchange survives a broker restart. (Messages
	//                do not become durable by this: that takes durable
	//                queues and persistent messages.)
	//   auto-delete: off, so it stays when its last queue unbinds; with it
	//                on, the exchange would vanish between deployments.
	//   internal:    off, so clients may publish to it.
	//   no-wait:     off, so we wait for declare-ok and learn here, not
	//                later on some other call, that the broker refused.
	//   args:        none.

	// Recognise the refusal: an *amqp.Error with code 406
	// (amqp.PreconditionFailed). Wrap errInequivalent and the broker's
	// error, and name the exchange.

	// Any other failure: wrap it, naming the exchange.

	return labkit.TODO("declareExchange", "declare the durable topic exchange and recognise 406 PRECONDITION_FAILED")
}
