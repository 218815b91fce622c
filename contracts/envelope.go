package contracts

import (
	"encoding/json"
	"fmt"
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
	var env Envelope
	if err := json.Unmarshal(value, &env); err != nil {
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
