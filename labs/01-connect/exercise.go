//go:build exercise

package main

import (
	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/labs/labkit"
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
// Exercise: write it, following the steps below. Check it with
//
//	go test -tags exercise ./labs/01-connect
//
// and see it in the program with go run -tags exercise ./labs/01-connect.
// The hints are in docs/exercises.md; the answer is in solution.go.
func dial(rawURL, connName string) (*amqp.Connection, error) {
	// Name the connection: rabbitmqctl list_connections and the management
	// UI show this name, so an operator can tell which program it is.

	// Dial: the TCP connect and the AMQP handshake, both bounded by
	// dialTimeout, so that a server that never answers cannot hang us.

	// From here on, name the broker by redact(rawURL), never by rawURL:
	// rawURL holds the password.

	// A refused login: the broker is there and answered with an
	// *amqp.Error of code 403 (amqp.AccessRefused).

	// An absent broker: the TCP connect itself was refused
	// (syscall.ECONNREFUSED), so no AMQP was ever spoken.

	// Anything else goes back as it came: explainDialError knows the rarer
	// failures (virtual host, DNS, not a broker, timeout).

	return nil, labkit.TODO("dial", "name the connection, dial with a timeout, tell a refused login from an absent broker")
}
