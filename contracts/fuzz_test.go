package contracts

import (
	"encoding/json"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the AMQP decoding path: every input
// must give either a valid event or an error, never a panic.
//
//	go test ./contracts -run '^$' -fuzz FuzzDecode -fuzztime 30s
func FuzzDecode(f *testing.F) {
	for name, ev := range samples() {
		body, _ := json.Marshal(ev)
		f.Add(name, body)
	}
	f.Add("event.created", []byte(`{"id":`))
	f.Add("", []byte(`null`))
	f.Fuzz(func(t *testing.T, name string, body []byte) {
		ev, err := Decode(name, body)
		if err == nil && (ev == nil || ev.Validate() != nil || ev.EventName() != name) {
			t.Fatalf("Decode(%q, %q) accepted an invalid event %+v", name, body, ev)
		}
	})
}

// FuzzUnwrap does the same for the Kafka envelope path.
//
//	go test ./contracts -run '^$' -fuzz FuzzUnwrap -fuzztime 30s
func FuzzUnwrap(f *testing.F) {
	for _, ev := range samples() {
		value, _ := Wrap(ev)
		f.Add(value)
	}
	f.Add([]byte(`{"eventName":"event.booked","payload":null}`))
	f.Fuzz(func(t *testing.T, value []byte) {
		name, ev, err := Unwrap(value)
		if err == nil && (ev == nil || ev.EventName() != name || ev.Validate() != nil) {
			t.Fatalf("Unwrap(%q) accepted an invalid event %+v", value, ev)
		}
	})
}
