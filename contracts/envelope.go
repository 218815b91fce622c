package contracts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"
)

// Envelope is the value of every Kafka record on the topic "events": the
// event's name beside its payload, so one topic can carry every event type
// and a consumer knows which type to decode into.
type Envelope struct {
	EventName string          `json:"eventName"`
	Payload   json.RawMessage `json:"payload"`
}

// Wrap encodes an event into an envelope.
func Wrap(ev Event) ([]byte, error) {
	payload, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encoding %s payload: %w", ev.EventName(), err)
	}
	return json.Marshal(Envelope{EventName: ev.EventName(), Payload: payload})
}

// Unwrap decodes an envelope into a pointer to the contract type its
// eventName names. It returns the name it found even when decoding fails,
// so a caller can report which event was broken.
func Unwrap(value []byte) (string, Event, error) {
	// The shortcut takes only what decodeFlat reads (an object one level
	// deep): the general path refuses some payloads that would decode
	// alone, such as one nested 9,999 deep, one level short of
	// encoding/json's limit that the envelope reaches. Anything else, and
	// every error, comes from the general path, so it reads the same
	// whichever way the envelope was written.
	if name, payload, ok := canonical(value); ok && utf8.Valid(payload) {
		if ev, ok := decodeFlat(name, payload); ok && ev.Validate() == nil {
			return name, ev, nil
		}
	}
	return unwrap(value)
}

// unwrap is Unwrap for an envelope of any form: the envelope decoded,
// then its payload.
func unwrap(value []byte) (string, Event, error) {
	if len(bytes.TrimSpace(value)) == 0 {
		return "", nil, errors.New("decoding envelope: the value is empty (a record with no value, such as a tombstone, carries no event)")
	}
	var env Envelope
	if err := json.Unmarshal(value, &env); err != nil {
		return "", nil, fmt.Errorf("decoding envelope: %w", err)
	}
	if err := CheckKeys(value, &env, true); err != nil {
		return "", nil, fmt.Errorf("decoding envelope: %w", err)
	}
	if env.EventName == "" {
		return "", nil, fmt.Errorf("decoding envelope: eventName is missing")
	}
	if len(env.Payload) == 0 {
		return env.EventName, nil, fmt.Errorf("decoding envelope of %s: payload is missing", env.EventName)
	}
	ev, err := Decode(env.EventName, env.Payload)
	return env.EventName, ev, err
}

// The parts of an envelope as Wrap writes it: eventName first, no spaces.
var (
	canonicalName    = []byte(`{"eventName":"`)
	canonicalPayload = []byte(`","payload":`)
	canonicalEnd     = []byte(`}`)
)

// knownNames holds every event name, for canonical to look up without
// allocating.
var knownNames = Names()

// canonical splits an envelope written as Wrap writes it,
// {"eventName":"NAME","payload":PAYLOAD}, into NAME and PAYLOAD without
// decoding it, so that Unwrap decodes the payload once instead of decoding
// the envelope and then its payload. NAME must be a known event name, so
// it holds no escapes. PAYLOAD is not checked here: Unwrap hands it to
// decodeFlat, and the envelope is valid JSON when decodeFlat reads its
// payload. Any other form (keys in another order, spaces, escapes)
// reports false and takes the general path.
func canonical(value []byte) (name string, payload []byte, ok bool) {
	rest, found := bytes.CutPrefix(value, canonicalName)
	if !found {
		return "", nil, false
	}
	end := bytes.IndexByte(rest, '"')
	if end < 0 || !bytes.HasPrefix(rest[end:], canonicalPayload) {
		return "", nil, false
	}
	i := slices.Index(knownNames, string(rest[:end]))
	if i < 0 {
		return "", nil, false
	}
	payload, found = bytes.CutSuffix(rest[end+len(canonicalPayload):], canonicalEnd)
	if !found {
		return "", nil, false
	}
	return knownNames[i], payload, true
}
