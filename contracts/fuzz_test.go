package contracts

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"unicode/utf8"
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
	f.Add("event.booked", []byte(`{"id":"b","event_id":"e","user_id":"u","seats":01,"date":"2026-01-01T00:00:00Z"}`))
	f.Add("event.booked", []byte(`{"id":"b","event_id":"e","user_id":"\u0041","seats":-0,"date":"2026-01-01T00:00:00+01:00"} `))
	f.Add("event.booked", []byte(`{"id":"b","event_id":"e","user_id":"u","seats":99999999999999999999,"date":"2026-01-01T00:00:00Z"}`))
	f.Add("event.created", []byte(`{"id":"e","name":"n","location_id":"l","hall":"h","capacity":5,"start_date":"2026-01-01T00:00:00Z","end_date":"2026-01-01T02:00:00.5Z"}`))
	f.Add("", []byte(`null`))
	f.Fuzz(func(t *testing.T, name string, body []byte) {
		ev, err := Decode(name, body)
		if err == nil && (ev == nil || ev.Validate() != nil || ev.EventName() != name) {
			t.Fatalf("Decode(%q, %q) accepted an invalid event %+v", name, body, ev)
		}
		// Where the one-pass reader answers, json.Unmarshal must give
		// the same event.
		if flat, ok := decodeFlat(name, body); ok && utf8.Valid(body) {
			want, _ := New(name)
			if err := json.Unmarshal(body, want); err != nil || !reflect.DeepEqual(flat, want) {
				t.Fatalf("decodeFlat(%q, %q) = %+v; json.Unmarshal gives %+v, %v", name, body, flat, want, err)
			}
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
	f.Add([]byte(`{"eventName":"event.booked","payload":{"id":"b"},"eventName":"event.created"}`))
	f.Add([]byte(`{"eventName":"event.booked","payload":{"id":"b","event_id":"e","seats":1,"date":"2026-01-01T00:00:00Z"} }`))
	f.Fuzz(func(t *testing.T, value []byte) {
		name, ev, err := Unwrap(value)
		if err == nil && (ev == nil || ev.EventName() != name || ev.Validate() != nil) {
			t.Fatalf("Unwrap(%q) accepted an invalid event %+v", value, ev)
		}
		// The canonical form's shortcut must agree with the general path
		// on every input: the same name, event and error.
		wantName, want, wantErr := unwrap(value)
		if name != wantName || !reflect.DeepEqual(ev, want) || fmt.Sprint(err) != fmt.Sprint(wantErr) {
			t.Fatalf("Unwrap(%q) = %q, %+v, %v; the general path gives %q, %+v, %v",
				value, name, ev, err, wantName, want, wantErr)
		}
	})
}
