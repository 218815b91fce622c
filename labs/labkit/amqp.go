// Package labkit holds the few helpers that labs 02 to 14 share word for
// word, so that every lab says the same thing about the same mistake: how a
// failed RabbitMQ or Kafka connection is explained, how broker addresses are
// read from flags and the environment. Lab 01-connect takes the AMQP steps one
// by one; from lab 02 on, a lab calls DialAMQPContext, which Ctrl-C stops,
// and keeps its own story short. DialAMQP, which it wraps, is left to
// tests.
//
// Programs import labkit; tests get their brokers from labs/brokertest.
package labkit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/capstone/endpoint"
)

// DialTimeout bounds connecting and logging in. RabbitMQ waits about 3 s
// before it refuses a wrong password, so it must be longer than that, or a
// slow refusal would read as a timeout.
const DialTimeout = 5 * time.Second

// DialAMQP connects to RabbitMQ under a connection name that rabbitmqctl and
// the management UI show, and turns a failure into one sentence that says
// what to do.
func DialAMQP(rawURL, connName string) (*amqp.Connection, error) {
	// Check the URL before dialing, so that a typo does not look like a
	// network problem.
	if _, err := amqp.ParseURI(rawURL); err != nil {
		return nil, malformedURL(err)
	}
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(connName)
	conn, err := amqp.DialConfig(rawURL, amqp.Config{
		Dial:       amqp.DefaultDial(DialTimeout),
		Properties: props,
	})
	if err != nil {
		return nil, explainDialError(rawURL, err)
	}
	return conn, nil
}

// DialAMQPContext is DialAMQP that stops waiting when ctx ends (Ctrl-C): it
// returns at once with an error that wraps ctx's, instead of waiting out
// DialTimeout on a server that accepted the connection and never answers.
// A connection that the abandoned dial opens after all is closed.
func DialAMQPContext(ctx context.Context, rawURL, connName string) (*amqp.Connection, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("connecting to RabbitMQ at %s: %w", Redact(rawURL), err)
	}
	// The library's dial takes no context: run it in a goroutine of its own.
	type result struct {
		conn *amqp.Connection
		err  error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := DialAMQP(rawURL, connName)
		done <- result{conn, err}
	}()
	select {
	case r := <-done:
		return r.conn, r.err
	case <-ctx.Done():
		// Given up on: close the connection if it comes after all.
		go func() {
			if r := <-done; r.conn != nil {
				_ = r.conn.Close()
			}
		}()
		return nil, fmt.Errorf("connecting to RabbitMQ at %s: %w", Redact(rawURL), ctx.Err())
	}
}

// Redact hides the password of a URL, by the module's one rule
// (endpoint.Redact).
func Redact(rawURL string) string { return endpoint.Redact(rawURL) }

// malformedURL explains a URL that amqp.ParseURI rejected. The URL itself is
// not repeated: it may hold a password, and one that does not parse cannot
// be redacted.
func malformedURL(err error) error {
	cause := err
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		cause = urlErr.Err // the *url.Error text quotes the whole URL
	}
	return fmt.Errorf("the AMQP URL in -url or AMQP_URL is malformed (%v); write it as amqp://user:password@host:5672/vhost and percent-encode reserved characters in the password", cause)
}

// explainDialError turns a failed dial into one sentence: what went wrong
// and what to do about it.
func explainDialError(rawURL string, err error) error {
	where := Redact(rawURL)
	var amqpErr *amqp.Error
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.Is(err, amqp.ErrVhost), errors.As(err, &amqpErr) && amqpErr.Code == amqp.NotAllowed:
		return fmt.Errorf("connecting to RabbitMQ at %s: the broker refused access to the virtual host (%w); check the vhost at the end of the URL and the user's permissions", where, err)
	case errors.As(err, &amqpErr) && amqpErr.Code == amqp.AccessRefused:
		return fmt.Errorf("connecting to RabbitMQ at %s: the broker refused the user name or password (%w); fix them in -url or AMQP_URL (by default, RabbitMQ lets guest log in only from its own machine)", where, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("connecting to RabbitMQ at %s: nothing is listening there (%w); start RabbitMQ (`rabbitmq-server -detached`, or `docker compose -f docker/compose.yaml up -d --wait rabbitmq`) or point -url or AMQP_URL at a running broker", where, err)
	case errors.As(err, &dnsErr):
		return fmt.Errorf("connecting to RabbitMQ at %s: the host name does not resolve (%w); check the host in -url or AMQP_URL", where, err)
	case errors.Is(err, amqp.ErrClosed), errors.As(err, &amqpErr) && amqpErr.Code == amqp.FrameError:
		// Garbage instead of connection.start, or a hang-up before it.
		return fmt.Errorf("connecting to RabbitMQ at %s: something accepts connections there, but it does not speak AMQP (%w); point -url or AMQP_URL at RabbitMQ's AMQP port (5672 unless configured otherwise)", where, err)
	case errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Errorf("connecting to RabbitMQ at %s: no answer within %v (%w); check the host, the port and any firewall on the way", where, DialTimeout, err)
	}
	return fmt.Errorf("connecting to RabbitMQ at %s: %w", where, err)
}

// EnvOr returns the environment variable's value, or def when it is unset or
// empty.
func EnvOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// CapstoneExchange is the capstone's exchange (DefaultExchange in
// capstone/msgqueue/rabbitmq), whose queue BookingService consumes.
const CapstoneExchange = "events"

// CheckNames refuses, before anything is dialed, the -exchange and -queue
// values of a lab that publishes made-up events to an exchange of its own
// (own is its default, named in the sentence): an empty name (the broker
// invents one for a queue, and the empty exchange is its default one), a
// name starting with "amq." (the broker's own), and the capstone's
// exchange, whose queue BookingService would take the lab's events from
// as real ones. Any of them failed a run halfway, after declaring (and
// leaving) the rest, or fed the capstone.
func CheckNames(exchange, queue, own string) error {
	if err := CheckExchange(exchange, own); err != nil {
		return err
	}
	if queue == "" || strings.HasPrefix(queue, "amq.") {
		return fmt.Errorf("-queue must name a queue of the lab's own: not empty, which the broker would replace with a name it invents, and not starting with \"amq.\", which it reserves; got %q", queue)
	}
	return nil
}

// CheckExchange is the -exchange half of CheckNames, for a lab whose queues
// are not named by a -queue flag alone.
func CheckExchange(exchange, own string) error {
	switch {
	case exchange == "" || strings.HasPrefix(exchange, "amq."):
		return fmt.Errorf("-exchange must name an exchange of the lab's own: not empty, and not starting with \"amq.\", which the broker reserves; got %q", exchange)
	case exchange == CapstoneExchange:
		return fmt.Errorf("-exchange %s is the capstone's exchange, and this lab publishes made-up events to its exchange, which BookingService would apply: give it an exchange of its own, such as %s", CapstoneExchange, own)
	}
	return nil
}
