// Package msgqueuetest is the conformance suite that every msgqueue transport
// passes: one specification, run against AMQP, Kafka and the in-memory bus.
//
// A transport's own test file describes itself with a [Transport] and calls
// [Run]:
//
//	func TestConformance(t *testing.T) {
//		msgqueuetest.Run(t, msgqueuetest.Transport{
//			Name:   "rabbitmq",
//			NewEnv: func(t *testing.T) *msgqueuetest.Env { ... },
//		})
//	}
//
// Call Run from a test that does not call t.Parallel: the last subtest checks
// that no goroutine outlived the suite, and goroutines of tests running at
// the same time would look like leaks.
//
// # The hooks
//
// NewEnv is called once per subtest and must return a fresh, isolated
// namespace (an exchange or topic, and one service's queue or consumer
// group, with unique names) and remove what it created with t.Cleanup. The
// suite runs subtests in parallel, so environments must not share names.
// Every hook receives a context that ends with the subtest.
//
//   - Env.NewListener (required) builds a listener for one service, for the
//     given event names. Every call in one Env is for the same service (the
//     same queue or consumer group), so a second listener resumes where a
//     closed one stopped. When it returns, every event emitted afterwards
//     for those names must reach a later Listen, even if Listen starts long
//     after the emit (AMQP: the queue and its bindings exist; Kafka: the
//     group starts at or before the current end of the topic). The suite
//     always builds the listener before the emitter. Handler errors must be
//     retried after a short delay (tens of milliseconds), so the suite stays
//     fast.
//   - Env.NewEmitter (required) builds an emitter for the same exchange or
//     topic.
//   - Env.DeadLetters (optional) returns what the service's dead-letter
//     queue or topic holds so far. Nil skips the dead-letter subtest.
//   - Env.DeliveryLimit (set it) is the WithDeliveryLimit the listeners
//     are built with: small (say 3), with a retry backoff of tens of
//     milliseconds.
//   - Env.InjectPoison (optional) puts one broken message of the given kind
//     where the service's listener will read it, with id as its message ID
//     (AMQP: the message-id property; Kafka: say, the record key or a
//     header) so that DeadLetters can report it. [PoisonMessage] gives the
//     event name and body each kind should carry. Env.Poison lists the kinds
//     the hook supports; the others are not tested.
//   - Env.Interrupt (optional) breaks the broker connections of every
//     emitter and listener this Env built, the way an outage does (AMQP:
//     rabbitmqctl close_connection on connections named for this Env, never
//     all connections: the broker is shared). They must recover by
//     themselves: the listener resumes consuming, and an emit in progress
//     resends what the broker had not confirmed. Nil skips that phase of the
//     restart subtest; the listener restart (Close, then a new listener) is
//     always tested.
//
// The leak check ignores the goroutines that were running when Run started,
// and those that Transport.IgnoreGoroutines lists: goroutines expected to
// outlive the suite although they start during it (a library's global
// ticker, say). Start what the whole test binary shares (its broker, from
// brokertest.AMQP or brokertest.Kafka) before calling Run.
//
// # What the subtests assert
//
// See [Run]. Every subtest compares sets of event IDs and reports the
// missing and the extra ones; duplicates are allowed (delivery is
// at-least-once) and logged.
package msgqueuetest

import (
	"context"
	"testing"
	"time"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
	"go.uber.org/goleak"
)

// Transport describes a msgqueue transport to the suite.
type Transport struct {
	// Name labels log lines, such as "rabbitmq".
	Name string
	// NewEnv returns a fresh, isolated environment for one subtest; see the
	// package documentation.
	NewEnv func(t *testing.T) *Env
	// Timeout bounds each wait for events to arrive. Zero means 30 seconds.
	Timeout time.Duration
	// IgnoreGoroutines are goleak options for goroutines that are expected
	// to outlive the suite.
	IgnoreGoroutines []goleak.Option
}

// Env is one isolated namespace: an exchange or topic, and one service's
// queue or consumer group. See the package documentation for each hook.
type Env struct {
	// NewListener builds a listener for this Env's service, for names.
	NewListener func(ctx context.Context, names ...string) (msgqueue.Listener, error)
	// NewEmitter builds an emitter for this Env's exchange or topic.
	NewEmitter func(ctx context.Context) (msgqueue.Emitter, error)

	// DeadLetters lists what the service's dead-letter queue or topic holds
	// so far, in any order. Optional.
	DeadLetters func(ctx context.Context) ([]DeadLetter, error)
	// InjectPoison puts one message of the given kind in front of the
	// service's listener, with id as its message ID. Optional.
	InjectPoison func(ctx context.Context, kind PoisonKind, id string) error
	// Poison lists the kinds InjectPoison supports.
	Poison []PoisonKind
	// Interrupt breaks the broker connections of every emitter and listener
	// this Env built. Optional.
	Interrupt func(ctx context.Context) error
	// DeliveryLimit is the WithDeliveryLimit this Env's listeners are
	// built with. Zero skips DeliveryLimitCountsDeliveries.
	DeliveryLimit int
}

// DeadLetter is one message found in a dead-letter queue or topic.
type DeadLetter struct {
	// ID is the message ID: for an injected poison message, the id given to
	// InjectPoison.
	ID string
	// Name is the event name the message carried, if any.
	Name string
	// Body is the message body as the transport carried it: the event's
	// JSON (AMQP) or its envelope (Kafka); the suite accepts both.
	Body []byte
}

// PoisonKind is a way a message can be broken beyond any retry.
type PoisonKind string

// The poison kinds.
const (
	// Malformed is a known event name with a body that is not JSON.
	Malformed PoisonKind = "malformed"
	// MissingName carries no event name at all (AMQP: no x-event-name
	// header; Kafka: an envelope without eventName).
	MissingName PoisonKind = "missing-name"
	// UnknownName carries an event name that no contract has.
	UnknownName PoisonKind = "unknown-name"
	// Invalid is well-formed JSON of a known event that fails Validate.
	Invalid PoisonKind = "invalid"
)

// AllPoison lists every poison kind.
var AllPoison = []PoisonKind{Malformed, MissingName, UnknownName, Invalid}

// PoisonMessage returns the event name (empty for MissingName) and the event
// body that a message of the given kind carries. A Kafka hook puts them in an
// envelope (for Malformed, use the body as the whole record value). An
// unknown kind gives an empty name and a nil body.
func PoisonMessage(kind PoisonKind) (name string, body []byte) {
	switch kind {
	case Malformed:
		return contracts.EventBookedName, []byte(`{"id": "b-1", "event_id": `)
	case MissingName:
		return "", []byte(`{"id": "b-1", "event_id": "e-1", "user_id": "u-1", "seats": 1}`)
	case UnknownName:
		return "event.cancelled", []byte(`{"id": "e-1"}`)
	case Invalid:
		return contracts.EventBookedName, []byte(`{"id": "", "event_id": "e-1", "seats": 0}`)
	}
	return "", nil
}

// defaultTimeout bounds each wait when Transport.Timeout is zero.
const defaultTimeout = 30 * time.Second

// Run runs the conformance suite against tr. The subtests run in parallel,
// each in its own Env:
//
//   - RoundTrip: one event of every contract type (contracts.Names())
//     arrives as the same Go type with the same JSON.
//   - NameFilter: Listen with one name only hands that name to the handler;
//     the other events of the same entity, emitted before and after, never
//     reach it (a final event proves they were all consumed).
//   - PerKeyOrder: events emitted one after another for one partition key
//     arrive in that order, for several keys emitted concurrently.
//   - HandlerErrorRedelivers: a handler error for one event means that event
//     is delivered again until the handler accepts it; the others arrive.
//   - DeadLetters: poison messages of every supported kind and an event
//     whose handler returns msgqueue.Permanent end up in the dead letters,
//     the handler never sees the poison, and the events emitted after them
//     still arrive.
//   - RestartResumesWithoutLoss: while four goroutines keep emitting, the
//     broker connections are broken (Interrupt, while the handler holds a
//     delivery and emits are in flight), consumption must resume by itself,
//     and later the listener is closed and replaced; every emit succeeds
//     and every confirmed event arrives. Emitted, confirmed, received and
//     duplicate counts are logged.
//   - ConcurrentEmit: 50 goroutines emit at once; every event arrives.
//   - CancelEndsListen: cancelling Listen's context makes it return nil;
//     Close twice is fine; Emit and Listen after Close return errors
//     wrapping msgqueue.ErrClosed.
//   - CloseWaitsForHandler: Close called while a handler runs returns only
//     after that handler returned, and Listen returns nil.
//   - ListenAgainAfterReturn: after Listen returned (its context was
//     cancelled), Listen on the same listener receives what was emitted
//     meanwhile.
//   - RefusesUnknownName: Listen with a name the listener was not built for
//     (a known contract, or no contract at all) returns an error; the
//     listener still works afterwards.
//   - EmitRefusesOversized: Emit refuses an event over
//     msgqueue.MaxMessageSize with msgqueue.ErrTooLarge, and the handler
//     only sees the event emitted after it.
//   - DeliveryLimitCountsDeliveries: an event whose handler always fails is
//     handed over exactly Env.DeliveryLimit times, then dead-lettered (if
//     DeadLetters is set); the event behind it arrives.
//   - UnavailableIsNotCounted: a handler that answers msgqueue.Unavailable
//     (its store is down) more often than Env.DeliveryLimit gets the same
//     event again until it accepts it: nothing is dead-lettered, and the
//     listener's Health fails while the handler is down and passes again
//     after.
//
// Then NoLeakedGoroutines checks that nothing the suite started is still
// running.
func Run(t *testing.T, tr Transport) {
	t.Helper()
	if tr.NewEnv == nil {
		t.Fatal("msgqueuetest: Transport.NewEnv is nil")
	}
	if tr.Timeout == 0 {
		tr.Timeout = defaultTimeout
	}
	before := goleak.IgnoreCurrent()
	s := &suite{tr: tr}
	t.Run("suite", func(t *testing.T) {
		for _, st := range []struct {
			name string
			run  func(*testing.T)
		}{
			{"RoundTrip", s.roundTrip},
			{"NameFilter", s.nameFilter},
			{"PerKeyOrder", s.perKeyOrder},
			{"HandlerErrorRedelivers", s.handlerErrorRedelivers},
			{"DeadLetters", s.deadLetters},
			{"RestartResumesWithoutLoss", s.restart},
			{"ConcurrentEmit", s.concurrentEmit},
			{"CancelEndsListen", s.cancelEndsListen},
			{"CloseWaitsForHandler", s.closeWaitsForHandler},
			{"ListenAgainAfterReturn", s.listenAgainAfterReturn},
			{"RefusesUnknownName", s.refusesUnknownName},
			{"EmitRefusesOversized", s.emitRefusesOversized},
			{"DeliveryLimitCountsDeliveries", s.deliveryLimitCountsDeliveries},
			{"UnavailableIsNotCounted", s.unavailableIsNotCounted},
		} {
			t.Run(st.name, func(t *testing.T) {
				t.Parallel()
				st.run(t)
			})
		}
	})
	t.Run("NoLeakedGoroutines", func(t *testing.T) {
		opts := append([]goleak.Option{before}, tr.IgnoreGoroutines...)
		if err := goleak.Find(opts...); err != nil {
			t.Errorf("goroutines outlived the suite: %v", err)
		}
	})
}

// suite carries the transport through the subtests.
type suite struct {
	tr Transport
}
