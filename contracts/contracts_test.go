package contracts

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// samples holds one valid value of every contract, keyed by name.
func samples() map[string]Event {
	at := time.Date(2026, 11, 27, 20, 0, 0, 0, time.UTC)
	return map[string]Event{
		LocationCreatedName: &LocationCreated{ID: "loc-1", Name: "Olympiastadion", Address: "Olympischer Platz 3",
			Country: "DE", OpenTime: 8, CloseTime: 23, Halls: []Hall{{Name: "Main", Capacity: 74475}}},
		EventCreatedName: &EventCreated{ID: "ev-1", Name: "Opera Aida", LocationID: "loc-1", Hall: "Main",
			Capacity: 74475, StartDate: at, EndDate: at.Add(3 * time.Hour)},
		EventBookedName: &EventBooked{ID: "bk-1", EventID: "ev-1", UserID: "u-1", Seats: 2, Date: at},
	}
}

func TestEveryNameHasASampleAndRoundTrips(t *testing.T) {
	s := samples()
	if got, want := Names(), []string{EventBookedName, EventCreatedName, LocationCreatedName}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	for _, name := range Names() {
		ev := s[name]
		if ev.EventName() != name {
			t.Errorf("%T.EventName() = %q, want %q", ev, ev.EventName(), name)
		}
		body, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("marshal %s: %v", name, err)
		}
		got, err := Decode(name, body)
		if err != nil {
			t.Fatalf("Decode(%s): %v", name, err)
		}
		if !reflect.DeepEqual(got, ev) {
			t.Errorf("Decode(%s) = %+v, want %+v", name, got, ev)
		}
		value, err := Wrap(ev)
		if err != nil {
			t.Fatalf("Wrap(%s): %v", name, err)
		}
		gotName, got, err := Unwrap(value)
		if err != nil || gotName != name || !reflect.DeepEqual(got, ev) {
			t.Errorf("Unwrap(Wrap(%s)) = %q %+v %v", name, gotName, got, err)
		}
	}
}

func TestJSONFieldNamesAreSnakeCase(t *testing.T) {
	body, err := json.Marshal(samples()[EventCreatedName])
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(body, &fields); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"id", "name", "location_id", "hall", "capacity", "start_date", "end_date"} {
		if _, ok := fields[want]; !ok {
			t.Errorf("event.created JSON has no %q field: %s", want, body)
		}
	}
	if len(fields) != 7 {
		t.Errorf("event.created JSON has %d fields, want 7 distinct ones: %s", len(fields), body)
	}
}

func TestPartitionKeyIsTheEntityID(t *testing.T) {
	s := samples()
	for name, want := range map[string]string{LocationCreatedName: "loc-1", EventCreatedName: "ev-1", EventBookedName: "ev-1"} {
		if got := s[name].PartitionKey(); got != want {
			t.Errorf("%s partition key = %q, want %q", name, got, want)
		}
	}
}

func TestDecodeRejectsBadInput(t *testing.T) {
	tests := []struct {
		name, event, body, want string
	}{
		{"unknown name", "user.created", `{"id":"x"}`, "unknown event name"},
		{"malformed JSON", EventCreatedName, `{"id":`, "decoding event.created"},
		{"trailing data", EventCreatedName, `{"id":"e","location_id":"l","hall":"h"} {}`, "trailing data"},
		{"missing id", EventCreatedName, `{"name":"x","location_id":"l","hall":"h"}`, "id is empty"},
		{"bad time", EventBookedName, `{"id":"b","event_id":"e","seats":1,"date":"yesterday"}`, "decoding event.booked"},
		{"zero seats", EventBookedName, `{"id":"b","event_id":"e","seats":0}`, "seats must be at least 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.event, []byte(tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := Decode("nope", nil); !errors.Is(err, ErrUnknownEvent) {
		t.Errorf("unknown name: %v is not ErrUnknownEvent", err)
	}
	if _, err := Decode(EventBookedName, []byte(`{"id":"b","event_id":"e","seats":-1}`)); !errors.Is(err, ErrInvalid) {
		t.Errorf("negative seats: %v is not ErrInvalid", err)
	}
}

// TestKeysReadAsEveryClientReadsThem: encoding/json takes "Seats" for
// seats and keeps the last of two equal keys, where a Python or
// JavaScript consumer of the same message reads other values (seats 1,
// not 700). Such a body is refused, on the broker as over HTTP; a key no
// field has in any case is still allowed (an event may gain fields).
func TestKeysReadAsEveryClientReadsThem(t *testing.T) {
	const date = `"date":"2026-12-06T20:00:00Z"`
	for _, tc := range []struct{ name, body, want string }{
		{"another case", `{"id":"b","event_id":"e","user_id":"u","seats":1,"Seats":700,` + date + `}`, `"Seats" is not "seats"`},
		{"another case alone", `{"ID":"b","event_id":"e","user_id":"u","seats":1,` + date + `}`, `"ID" is not "id"`},
		{"a key twice", `{"id":"b","id":"b2","event_id":"e","user_id":"u","seats":1,` + date + `}`, `"id" appears twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := Decode(EventBookedName, []byte(tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid) {
				t.Errorf("Decode = %+v, %v; want an ErrInvalid naming %s", ev, err, tc.want)
			}
			_, ev, err = Unwrap([]byte(`{"eventName":"event.booked","payload":` + tc.body + `}`))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Unwrap = %+v, %v; want an error naming %s", ev, err, tc.want)
			}
		})
	}
	for _, value := range []string{
		`{"eventName":"event.booked","eventName":"event.created","payload":{"id":"b","event_id":"e","user_id":"u","seats":1,` + date + `}}`,
		`{"EventName":"event.booked","payload":{"id":"b","event_id":"e","user_id":"u","seats":1,` + date + `}}`,
	} {
		if _, ev, err := Unwrap([]byte(value)); err == nil {
			t.Errorf("Unwrap(%s) = %+v, want an error", value, ev)
		}
	}
	ev, err := Decode(EventBookedName, []byte(`{"id":"b","event_id":"e","user_id":"u","seats":1,`+date+`,"coupon":"X"}`))
	if err != nil || ev.(*EventBooked).Seats != 1 {
		t.Errorf("a body with a field added later: %+v, %v; want it decoded", ev, err)
	}
}

func TestUnwrapRejectsBadEnvelopes(t *testing.T) {
	for _, value := range []string{``, `[]`, `{}`, `{"eventName":"event.created"}`, `{"eventName":"x.y","payload":{}}`, `{"eventName":"event.created","payload":"text"}`} {
		if _, ev, err := Unwrap([]byte(value)); err == nil {
			t.Errorf("Unwrap(%s) = %+v, want an error", value, ev)
		}
	}
}

// TestUnwrapSaysTheValueIsEmpty: a record with no value (a tombstone
// that kcat -Z or a compacting producer writes) or only white space is
// refused with an error that says so, not with encoding/json's
// "unexpected end of JSON input".
func TestUnwrapSaysTheValueIsEmpty(t *testing.T) {
	for _, value := range [][]byte{nil, {}, []byte(" \n")} {
		_, _, err := Unwrap(value)
		if err == nil || !strings.Contains(err.Error(), "the value is empty") {
			t.Errorf("Unwrap(%q) = %v, want an error saying the value is empty", value, err)
		}
	}
}

// TestUnwrapAgreesAtTheDepthLimit: encoding/json refuses JSON nested more
// than 10,000 deep, and the envelope adds one level to its payload, so a
// payload nested 9,999 deep decodes alone but not in its envelope. Unwrap
// must refuse it as the general path does.
func TestUnwrapAgreesAtTheDepthLimit(t *testing.T) {
	for _, depth := range []int{9998, 9999, 10000} {
		payload := `{"id":"b","event_id":"e","user_id":"u","seats":1,"date":"2026-01-01T00:00:00Z","x":` +
			strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`
		value := []byte(`{"eventName":"event.booked","payload":` + payload + `}`)
		name, ev, err := Unwrap(value)
		wantName, want, wantErr := unwrap(value)
		if name != wantName || !reflect.DeepEqual(ev, want) || fmt.Sprint(err) != fmt.Sprint(wantErr) {
			t.Errorf("nested %d deep: Unwrap = %q, %v, %v; the general path gives %q, %v, %v",
				depth, name, ev != nil, err, wantName, want != nil, wantErr)
		}
	}
}
