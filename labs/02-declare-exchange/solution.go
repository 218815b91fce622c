//go:build !exercise

package main

import (
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
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
// This is the lab's exercise: exercise.go holds the template, and
// go test -tags exercise ./labs/02-declare-exchange checks it.
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
	err := ch.ExchangeDeclare(
		name,               // name
		amqp.ExchangeTopic, // type
		true,               // durable
		false,              // auto-delete
		false,              // internal
		false,              // no-wait
		nil,                // args
	)
	if err == nil {
		return nil
	}

	// Recognise the refusal: an *amqp.Error with code 406
	// (amqp.PreconditionFailed). Wrap errInequivalent and the broker's
	// error, and name the exchange.
	var amqpErr *amqp.Error
	if errors.As(err, &amqpErr) && amqpErr.Code == amqp.PreconditionFailed {
		return fmt.Errorf("declaring exchange %q: %w (%w)", name, errInequivalent, err)
	}

	// Any other failure: wrap it, naming the exchange.
	return fmt.Errorf("declaring exchange %q: %w", name, err)
}
