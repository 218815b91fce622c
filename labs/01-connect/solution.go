//go:build !exercise

package main

import (
	"errors"
	"fmt"
	"syscall"

	amqp "github.com/rabbitmq/amqp091-go"
)

// dial connects to RabbitMQ at rawURL under the connection name connName,
// giving up after dialTimeout, and tells the two commonest failures apart:
//
//   - the broker refused the user name or password: the error wraps
//     errLoginRefused and the library's error;
//   - nothing listens at the address: the error wraps errNoBroker and the
//     library's error.
//
// Each of those is one sentence that says what to do and never shows the
// password. Any other failure is returned as the library reported it;
// explainDialError knows the rarer ones. (errLoginRefused, errNoBroker,
// redact and explainDialError are in main.go.)
//
// This is the lab's exercise: exercise.go holds the template, and
// go test -tags exercise ./labs/01-connect checks it.
func dial(rawURL, connName string) (*amqp.Connection, error) {
	// Name the connection: rabbitmqctl list_connections and the management
	// UI show this name, so an operator can tell which program it is.
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(connName)

	// Dial: the TCP connect and the AMQP handshake, both bounded by
	// dialTimeout, so that a server that never answers cannot hang us.
	conn, err := amqp.DialConfig(rawURL, amqp.Config{
		Dial:       amqp.DefaultDial(dialTimeout),
		Properties: props,
	})
	if err == nil {
		return conn, nil
	}

	// From here on, name the broker by redact(rawURL), never by rawURL:
	// rawURL holds the password.
	where := redact(rawURL)

	// A refused login: the broker is there and answered with an
	// *amqp.Error of code 403 (amqp.AccessRefused).
	var amqpErr *amqp.Error
	if errors.As(err, &amqpErr) && amqpErr.Code == amqp.AccessRefused {
		return nil, fmt.Errorf("connecting to RabbitMQ at %s: %w (%w); fix them in -url or AMQP_URL (by default, RabbitMQ lets guest log in only from its own machine)", where, errLoginRefused, err)
	}

	// An absent broker: the TCP connect itself was refused
	// (syscall.ECONNREFUSED), so no AMQP was ever spoken.
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil, fmt.Errorf("connecting to RabbitMQ at %s: %w (%w); start RabbitMQ (`rabbitmq-server -detached`, or `docker compose -f docker/compose.yaml up -d --wait rabbitmq`) or point -url or AMQP_URL at a running broker", where, errNoBroker, err)
	}

	// Anything else goes back as it came: explainDialError knows the rarer
	// failures (virtual host, DNS, not a broker, timeout).
	return nil, err
}
