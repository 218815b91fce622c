// Package contracts defines the events that MyEvents services exchange: one
// Go type per event, its name (which doubles as the AMQP routing key), its
// partition key (the Kafka record key) and a registry from name to type that
// every transport uses to decode what it receives.
//
// JSON field names are snake_case. Times are RFC 3339 strings on the wire.
package contracts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"unicode/utf8"
)

// ErrInvalid is wrapped by every Validate error.
var ErrInvalid = errors.New("invalid event")

// invalid builds a Validate error.
func invalid(name, format string, args ...any) error {
	return fmt.Errorf("%w %s: %s", ErrInvalid, name, fmt.Sprintf(format, args...))
}

// Event is what every contract implements.
type Event interface {
	// EventName is the event's name, such as "event.created". It is the
	// AMQP routing key and the x-event-name header, and the Kafka
	// envelope's eventName.
	EventName() string
	// PartitionKey is the ID of the entity the event is about. Kafka uses it
	// as the record key, so all events about one entity stay in order on
	// one partition.
	PartitionKey() string
	// Validate reports a missing ID or an impossible value.
	Validate() error
}

// ErrUnknownEvent is returned for an event name no contract has.
var ErrUnknownEvent = errors.New("unknown event name")

// registry maps each event name to a constructor of a zero value to decode
// into.
var registry = map[string]func() Event{
	LocationCreatedName: func() Event { return &LocationCreated{} },
	EventCreatedName:    func() Event { return &EventCreated{} },
	EventBookedName:     func() Event { return &EventBooked{} },
}

// Names lists every known event name, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// New returns a pointer to a new zero value of the named event, ready to be
// decoded into.
func New(name string) (Event, error) {
	mk, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownEvent, name)
	}
	return mk(), nil
}

// Decode turns the JSON body of the named event into a pointer to its
// contract type (for example *EventCreated). Unknown names, a body that is
// not valid UTF-8, malformed JSON, trailing data and events that fail
// Validate are errors.
func Decode(name string, body []byte) (Event, error) {
	ev, err := New(name)
	if err != nil {
		return nil, err
	}
	// A JSON decoder would silently replace invalid UTF-8 with U+FFFD.
	if !utf8.Valid(body) {
		return nil, fmt.Errorf("decoding %s: %w", name, invalid(name, "the body is not valid UTF-8"))
	}
	// In one pass if body is written as json.Marshal writes it
	// (decodeFlat), else with json.Unmarshal, which takes exactly one JSON
	// value, as a json.Decoder followed by a check for io.EOF does, in
	// fewer passes over the body. Only when that fails is the body decoded
	// again, by the decoder, to name what is wrong (decodeError).
	if flat, ok := decodeFlat(name, body); ok {
		ev = flat
	} else if err := json.Unmarshal(body, ev); err != nil {
		return nil, decodeError(name, body, ev)
	} else if err := CheckKeys(body, ev, true); err != nil {
		// Read as encoding/json reads it, but not as other clients do.
		return nil, fmt.Errorf("decoding %s: %w", name, invalid(name, "%v", err))
	}
	if err := ev.Validate(); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", name, err)
	}
	return ev, nil
}

// decodeError says why body does not decode as the named event into ev.
// Decode calls it only after json.Unmarshal failed.
func decodeError(name string, body []byte, ev Event) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(ev); err != nil {
		return fmt.Errorf("decoding %s: %w", name, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("decoding %s: trailing data after the JSON object", name)
	}
	// json.Unmarshal and a json.Decoder take the same JSON; this is not
	// expected.
	return fmt.Errorf("decoding %s: the body is not one JSON object", name)
}
