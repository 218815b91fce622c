//go:build !exercise

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/go-viper/mapstructure/v2"

	"example.com/myevents/contracts"
)

// envelope is the value of every record on the one topic: the event's name
// beside its payload, so that one topic can carry every event type and a
// consumer knows which type to decode into.
type envelope struct {
	EventName string `json:"eventName"`
	Payload   any    `json:"payload"`
}

// encodeEnvelope wraps ev in an envelope, the value of its record:
//
//	{"eventName": "event.booked", "payload": {"id": "bk-1", ...}}
//
// encodeEnvelope, decodeEnvelope and newPayloadDecoder are the lab's
// exercise: exercise.go holds the template, and
// go test -tags exercise ./labs/09-partition-key-envelope checks it.
func encodeEnvelope(ev contracts.Event) ([]byte, error) {
	// The payload is the event's own JSON, with the snake_case field names
	// of its json tags; times become RFC 3339 strings. The envelope names
	// the event beside it, in the field order above. Declare the envelope
	// struct yourself (json tags eventName and payload, in that order):
	// the chapter's envelope type is not part of the exercise build.
	value, err := json.Marshal(envelope{EventName: ev.EventName(), Payload: ev})
	if err != nil {
		return nil, fmt.Errorf("encoding the %s envelope: %w", ev.EventName(), err)
	}
	return value, nil
}

// decodeEnvelope turns a record value back into a pointer to its contract
// type (for example *contracts.EventBooked). It reads the payload as a
// generic map first and maps it onto the struct with mapstructure, as the
// original chapter does. A broken value is an error for that record only:
// malformed JSON or trailing data ("malformed envelope: ..."), a missing
// name or payload ("... eventName is missing", "... payload is missing"),
// an unknown event name (wrapping contracts.ErrUnknownEvent), a payload
// that does not fit the type, or an event that fails Validate.
//
// The simpler alternative is to keep the payload as raw JSON
// (json.RawMessage) and unmarshal it straight into the struct once the name
// is known: one decoding pass, time.Time handled by encoding/json, no
// mapstructure at all. That is what contracts.Unwrap does, and what the
// capstone uses. mapstructure earns its place when the payload arrives as a
// map already (from YAML, a config library or another decoder).
func decodeEnvelope(value []byte) (contracts.Event, error) {
	// Step 1: read the envelope with the payload as a generic map, through
	// a json.Decoder (json.Unmarshal has no UseNumber). UseNumber keeps
	// numbers as json.Number, so that "seats": 2.5 is an error instead of
	// silently becoming 2 (a float64 would be truncated).
	// Anything after the object, or a missing name or payload, makes the
	// envelope malformed.
	var env struct {
		EventName string         `json:"eventName"`
		Payload   map[string]any `json:"payload"`
	}
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	if err := dec.Decode(&env); err != nil {
		return nil, fmt.Errorf("malformed envelope: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("malformed envelope: trailing data after the JSON object")
	}
	if env.EventName == "" {
		return nil, errors.New("malformed envelope: eventName is missing")
	}
	if env.Payload == nil {
		return nil, fmt.Errorf("malformed envelope of %s: payload is missing", env.EventName)
	}

	// Step 2: pick the contract type by name (contracts.New). An unknown
	// name (a newer producer, a typo) is an error for this record, not for
	// the consumer.
	ev, err := contracts.New(env.EventName)
	if err != nil {
		return nil, err
	}

	// Step 3: map the payload onto the struct with newPayloadDecoder, and
	// check the result (Validate).
	decoder, err := newPayloadDecoder(ev)
	if err != nil {
		return nil, err
	}
	if err := decoder.Decode(env.Payload); err != nil {
		return nil, fmt.Errorf("decoding %s payload: %s", env.EventName, oneLine(err))
	}
	if err := ev.Validate(); err != nil {
		return nil, err
	}
	return ev, nil
}

// newPayloadDecoder builds a mapstructure decoder that fills result, which
// must be a pointer.
//
// mapstructure is github.com/go-viper/mapstructure/v2, the maintained
// continuation of the archived github.com/mitchellh/mapstructure (same API,
// new import path).
func newPayloadDecoder(result any) (*mapstructure.Decoder, error) {
	// Build it with mapstructure.NewDecoder and a DecoderConfig:
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		// The contracts name their fields in json tags (snake_case).
		// Without this, mapstructure looks for "mapstructure" tags and
		// falls back to the Go field names.
		TagName: "json",
		// Times travel as RFC 3339 strings; a map holds them as strings,
		// and mapstructure cannot turn a string into a time.Time on its
		// own. (RFC 3339 parsing also accepts the fractional seconds
		// encoding/json writes.)
		DecodeHook: mapstructure.StringToTimeHookFunc(time.RFC3339),
		// Result must be a pointer: mapstructure fills what it points to.
		Result: result,
	})
	if err != nil {
		return nil, fmt.Errorf("building the payload decoder: %w", err)
	}
	return dec, nil
}
