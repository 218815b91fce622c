// Package msgqueue is the capstone's messaging library: one small interface
// for emitting and listening to events, with AMQP (RabbitMQ), Kafka and
// in-memory transports in its subpackages.
//
// The delivery rule is at-least-once: a message is acknowledged only after
// the handler returned nil for it. A handler error means "not processed":
// the message is delivered again later, so handlers must be idempotent
// (the same event twice changes nothing). A message that can never be
// processed (malformed, an unknown event name, or a handler that returns a
// Permanent error) goes to a dead-letter queue or topic instead of looping
// or vanishing.
//
// # One option vocabulary
//
// The transports' constructors take the same options under the same names,
// with one meaning:
//
//   - WithDeliveryLimit(n): a message is handed to the handler n times at
//     most; a handler error on the nth delivery dead-letters it (reason
//     retries-exhausted). The default is DefaultDeliveryLimit (5)
//     everywhere.
//   - WithRetryBackoff(first, longest): the wait before a message whose
//     handler failed is delivered again: first after the first failure,
//     doubling with each delivery up to longest.
//   - WithLogger(l): where the transport logs retries, dead letters and
//     reconnects.
//
// A listener is built for the event names it handles, given in every
// constructor as a names []string after the queue or consumer group.
//
// Every Emitter and Listener reports its transport's health with Health:
// the in-memory transport is always healthy.
package msgqueue

import (
	"context"
	"errors"

	"example.com/myevents/contracts"
)

// DefaultDeliveryLimit is how often every transport delivers a message at
// most unless WithDeliveryLimit says otherwise: the fifth failing delivery
// dead-letters it.
const DefaultDeliveryLimit = 5

// ErrClosed is wrapped by the error Emit and Listen return once Close has
// been called.
var ErrClosed = errors.New("msgqueue: closed")

// ErrUnroutable is wrapped by the error Emit returns when the broker accepted
// an event but no queue was bound for its name, so nobody would ever receive
// it (AMQP's mandatory flag). Declaring a listener binds its queue, so start
// (or at least construct) listeners before the emitters that feed them.
// Transports without routing (Kafka) never return it.
var ErrUnroutable = errors.New("msgqueue: no queue is bound for this event")

// Emitter publishes events.
type Emitter interface {
	// Emit publishes ev and returns only once the broker has taken
	// responsibility for it (AMQP: a publisher confirm for a persistent
	// message; Kafka: acknowledged by all in-sync replicas). An error means
	// the event may not have been stored: the caller decides whether to
	// retry. Emit is safe for concurrent use. After Close it returns an
	// error wrapping ErrClosed.
	Emit(ctx context.Context, ev contracts.Event) error
	// Health reports whether the emitter can reach its broker (nil) or
	// why not: AMQP, its connection is down (it is reconnecting); Kafka,
	// the cluster does not answer a metadata request for the topic. It
	// returns by the time ctx ends.
	Health(ctx context.Context) error
	// Close waits for outstanding emits and releases the connection.
	// Calling it again returns nil.
	Close() error
}

// Handler processes one event. Returning nil acknowledges it; returning an
// error leaves it to be delivered again (up to the listener's delivery
// limit); returning Permanent(err) sends it to the dead-letter queue;
// returning Unavailable(err) (the handler's store is down) has it handed
// over again for as long as it takes, uncounted.
type Handler func(ctx context.Context, ev contracts.Event) error

// BatchHandler applies several events at once, all or none: a window of
// deliveries that arrived together, in delivery order, all of one event
// name (one store transaction for all of them, say); an event of another
// name starts another window. Returning nil acknowledges them all;
// an error (of any kind) means nothing was applied, and the listener hands
// each event to the Handler alone, where the usual rules of retries and
// dead letters apply one message at a time. So a BatchHandler may refuse a
// window it cannot apply whole (an event of another kind, one that does not
// validate) just by returning an error. Like a Handler it must be
// idempotent. A BatchListener's ListenBatch calls it; Listen never does.
type BatchHandler func(ctx context.Context, evs []contracts.Event) error

// Listener delivers events to a handler.
//
// Every transport builds a listener for a fixed list of event names (the
// queue's bindings, the names a Kafka listener decodes), given the same
// way in all three constructors: a names []string after the queue or
// group. Listen refuses a name outside that list.
type Listener interface {
	// Listen calls h for every received event whose name is in names (all
	// names the listener was built for when names is empty) until ctx is
	// cancelled or Close is called, and then returns nil after in-flight
	// handlers finished. It returns an error only when listening cannot
	// start or cannot go on (after Close: an error wrapping ErrClosed).
	// Events of a name the listener was built for but that is not in names
	// are acknowledged without calling h. One Listen at a time per
	// listener; calls of h never overlap (a transport may make them from
	// different goroutines, one after the other), and come in the order the
	// transport delivers (per partition key at least). After a Listen
	// returned (its ctx ended), Listen may be called again.
	Listen(ctx context.Context, h Handler, names ...string) error
	// Health reports whether the listener can go on (nil) or why not:
	// AMQP, its connection is down; Kafka, a partition it cannot move
	// past. Services turn it into their /healthz answer.
	Health(ctx context.Context) error
	// Close stops listening, waits for in-flight handlers and releases the
	// connection. Calling it again returns nil.
	Close() error
}

// BatchListener is a Listener that can also hand the events that arrived
// together to a BatchHandler in one call: a window of deliveries
// (rabbitmq.Listener) or of a partition's records (kafka.Listener).
type BatchListener interface {
	Listener
	// ListenBatch is Listen that hands a window of events to hb in one
	// call, and each event to h alone when hb returns an error or an
	// event cannot be in a window (one the transport dead-letters, say).
	// With hb nil it is Listen.
	ListenBatch(ctx context.Context, h Handler, hb BatchHandler, names ...string) error
}

// permanent marks an error that retrying cannot fix.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent wraps err so that the listener dead-letters the message instead
// of delivering it again.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsPermanent reports whether err, or an error it wraps, was made by
// Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

// unavailable marks an error of a handler that cannot apply any event for
// now: its store is down, full or locked.
type unavailable struct{ err error }

func (u unavailable) Error() string { return u.err.Error() }
func (u unavailable) Unwrap() error { return u.err }

// Unavailable wraps err to say that the handler cannot apply any event for
// now (its store is down, full, read-only or locked), not that this event
// is wrong. The listener keeps the event and hands the same one over again
// after a backoff, as often as it takes: such a failure does not count
// against the delivery limit, since dead-lettering every event heard during
// a store outage would lose them all. Until a handler call succeeds (or
// fails otherwise), the listener's Health reports it cannot make progress,
// with err.
func Unavailable(err error) error {
	if err == nil {
		return nil
	}
	return unavailable{err}
}

// IsUnavailable reports whether err, or an error it wraps, was made by
// Unavailable.
func IsUnavailable(err error) bool {
	var u unavailable
	return errors.As(err, &u)
}

// ErrRefused wraps a broker's answer that says for certain it did not store
// an event (it is too large, the topic does not exist, the client may not
// write there). Other failures can leave an event stored whose
// acknowledgement was lost.
var ErrRefused = errors.New("the broker refused the event")

// UnconfirmedError is the error of an Emit that stopped waiting (its
// context ended) after the event had gone to the broker, which may still
// store it: the emit's outcome is not known yet. Final receives the
// client's last word once it has one: nil when the broker stored the
// event, an error wrapping ErrRefused when it certainly did not, and any
// other error when the outcome stays unknown (the client gave up on an
// answer the broker may have lost after storing the event). A caller that
// would undo its write when an emit fails must undo it only on ErrRefused
// (outbox.Publisher does that). Transports that can tell return it
// (kafka.Emitter, rabbitmq.Emitter).
type UnconfirmedError struct {
	Err   error
	Final <-chan error
}

func (e *UnconfirmedError) Error() string {
	return "the broker has not confirmed the event yet and may still store it: " + e.Err.Error()
}

func (e *UnconfirmedError) Unwrap() error { return e.Err }
