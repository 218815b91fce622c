//go:build exercise

package main

import (
	"github.com/go-viper/mapstructure/v2"

	"example.com/myevents/contracts"
	"example.com/myevents/labs/labkit"
)

// encodeEnvelope wraps ev in an envelope, the value of its record:
//
//	{"eventName": "event.booked", "payload": {"id": "bk-1", ...}}
//
// Exercise: write encodeEnvelope, decodeEnvelope and newPayloadDecoder,
// following the steps in each. Check them with
//
//	go test -tags exercise ./labs/09-partition-key-envelope
//
// and see them in the program with go run -tags exercise ./labs/09-partition-key-envelope.
// The hints are in docs/exercises.md; the answer is in solution.go.
func encodeEnvelope(ev contracts.Event) ([]byte, error) {
	// The payload is the event's own JSON, with the snake_case field names
	// of its json tags; times become RFC 3339 strings. The envelope names
	// the event beside it, in the field order above. Declare the envelope
	// struct yourself (json tags eventName and payload, in that order):
	// the chapter's envelope type is not part of the exercise build.

	return nil, labkit.TODO("encodeEnvelope", `marshal {"eventName": ev.EventName(), "payload": ev} with encoding/json`)
}

// decodeEnvelope turns a record value back into a pointer to its contract
// type (for example *contracts.EventBooked). It reads the payload as a
// generic map first and maps it onto the struct with mapstructure, as the
// original chapter does. A broken value is an error for that record only:
// malformed JSON or trailing data ("malformed envelope: ..."), a missing
// name or payload ("... eventName is missing", "... payload is missing"),
// an unknown event name (wrapping contracts.ErrUnknownEvent), a payload
// that does not fit the type, or an event that fails Validate.
func decodeEnvelope(value []byte) (contracts.Event, error) {
	// Step 1: read the envelope with the payload as a generic map, through
	// a json.Decoder (json.Unmarshal has no UseNumber). UseNumber keeps
	// numbers as json.Number, so that "seats": 2.5 is an error instead of
	// silently becoming 2 (a float64 would be truncated).
	// Anything after the object, or a missing name or payload, makes the
	// envelope malformed.

	// Step 2: pick the contract type by name (contracts.New). An unknown
	// name (a newer producer, a typo) is an error for this record, not for
	// the consumer.

	// Step 3: map the payload onto the struct with newPayloadDecoder, and
	// check the result (Validate).

	return nil, labkit.TODO("decodeEnvelope", "read the envelope, pick the type by eventName, map the payload onto it")
}

// newPayloadDecoder builds a mapstructure decoder that fills result, which
// must be a pointer.
//
// mapstructure is github.com/go-viper/mapstructure/v2, the maintained
// continuation of the archived github.com/mitchellh/mapstructure (same API,
// new import path).
func newPayloadDecoder(result any) (*mapstructure.Decoder, error) {
	// Build it with mapstructure.NewDecoder and a DecoderConfig:
	//   TagName:    the contracts name their fields in json tags
	//               (snake_case); without it, mapstructure looks for
	//               "mapstructure" tags and falls back to the Go names.
	//   DecodeHook: times travel as RFC 3339 strings, and mapstructure
	//               cannot turn a string into a time.Time on its own.
	//   Result:     what to fill; it must be a pointer.

	return nil, labkit.TODO("newPayloadDecoder", "configure the json tag name, a string-to-time hook and the result")
}
