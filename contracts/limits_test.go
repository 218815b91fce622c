package contracts

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestLimits: every event outside the limits is refused by Decode (and so
// by every listener) with an error wrapping ErrInvalid; the borders pass.
func TestLimits(t *testing.T) {
	long := strings.Repeat("x", MaxIDBytes+1)
	longText := strings.Repeat("x", MaxTextBytes+1)
	halls := func(n int) string {
		hs := make([]string, n)
		for i := range hs {
			hs[i] = fmt.Sprintf(`{"name":"h%d","capacity":1}`, i)
		}
		return "[" + strings.Join(hs, ",") + "]"
	}
	tests := []struct {
		name, event, body, want string // want "" means valid
	}{
		{"1 seat", EventBookedName, `{"id":"b","event_id":"e","user_id":"u","seats":1}`, ""},
		{"1000 seats", EventBookedName, `{"id":"b","event_id":"e","user_id":"u","seats":1000}`, ""},
		{"1001 seats", EventBookedName, `{"id":"b","event_id":"e","user_id":"u","seats":1001}`, "at most 1000"},
		{"2^63-1 seats", EventBookedName, `{"id":"b","event_id":"e","user_id":"u","seats":9223372036854775807}`, "at most 1000"},
		{"3e9 seats", EventBookedName, `{"id":"b","event_id":"e","user_id":"u","seats":3000000000}`, "at most 1000"},
		{"user_id of 200 bytes", EventBookedName, `{"id":"b","event_id":"e","user_id":"` + long[:200] + `","seats":1}`, ""},
		{"user_id of 201 bytes", EventBookedName, `{"id":"b","event_id":"e","user_id":"` + long + `","seats":1}`, "user_id is 201 bytes"},
		{"NUL in user_id", EventBookedName, `{"id":"b","event_id":"e","user_id":"a\u0000b","seats":1}`, "control character"},
		{"lone surrogate in user_id", EventBookedName, `{"id":"b","event_id":"e","user_id":"\ud800","seats":1}`, "U+FFFD"},
		{"invalid UTF-8 in user_id", EventBookedName, "{\"id\":\"b\",\"event_id\":\"e\",\"user_id\":\"a\xffb\",\"seats\":1}", "not valid UTF-8"},
		{"NUL in event_id", EventBookedName, `{"id":"b","event_id":"\u0000","user_id":"u","seats":1}`, "control character"},
		{"newline in id", EventBookedName, `{"id":"b\n","event_id":"e","user_id":"u","seats":1}`, "control character"},
		// A booking another instance sold counts, whatever its text: the
		// HTTP API refuses such a user_id (CheckNoBidi), the broker not.
		{"right-to-left override in id", EventBookedName, `{"id":"b\u202ecod.exe","event_id":"e","user_id":"u","seats":1}`, ""},
		{"right-to-left mark in user_id", EventBookedName, `{"id":"b","event_id":"e","user_id":"u\u200f","seats":1}`, ""},
		{"right-to-left mark in an event's name", EventCreatedName, `{"id":"e","name":"\u05e9\u05dc\u05d5\u05dd\u200f 2024","location_id":"l","hall":"h","capacity":1}`, ""},
		{"long id", EventBookedName, `{"id":"` + long + `","event_id":"e","user_id":"u","seats":1}`, "id is 201 bytes"},
		{"capacity 1", EventCreatedName, `{"id":"e","location_id":"l","hall":"h","capacity":1}`, ""},
		{"capacity 1000000", EventCreatedName, `{"id":"e","location_id":"l","hall":"h","capacity":1000000}`, ""},
		{"capacity 0", EventCreatedName, `{"id":"e","location_id":"l","hall":"h","capacity":0}`, "at least 1"},
		{"capacity 1000001", EventCreatedName, `{"id":"e","location_id":"l","hall":"h","capacity":1000001}`, "at most 1000000"},
		{"NUL in event.created id", EventCreatedName, `{"id":"\u0000","location_id":"l","hall":"h","capacity":1}`, "control character"},
		{"long event name", EventCreatedName, `{"id":"e","name":"` + longText + `","location_id":"l","hall":"h","capacity":1}`, "name is 201 bytes"},
		{"location with no name", LocationCreatedName, `{"id":"l","halls":[{"name":"h","capacity":1}]}`, "name is empty"},
		{"hall capacity 0", LocationCreatedName, `{"id":"l","name":"n","halls":[{"name":"h","capacity":0}]}`, "at least 1"},
		{"hall capacity 2e6", LocationCreatedName, `{"id":"l","name":"n","halls":[{"name":"h","capacity":2000000}]}`, "at most 1000000"},
		{"NUL in hall name", LocationCreatedName, `{"id":"l","name":"n","halls":[{"name":"\u0000","capacity":1}]}`, "control character"},
		{"100 halls", LocationCreatedName, `{"id":"l","name":"n","halls":` + halls(100) + `}`, ""},
		{"101 halls", LocationCreatedName, `{"id":"l","name":"n","halls":` + halls(101) + `}`, "at most 100 halls"},
		{"invalid UTF-8 in address", LocationCreatedName, "{\"id\":\"l\",\"name\":\"n\",\"address\":\"\xc3\x28\"}", "not valid UTF-8"},
		{"two halls of one name", LocationCreatedName, `{"id":"l","name":"n","halls":[{"name":"A","capacity":1},{"name":"B","capacity":1},{"name":"A","capacity":2}]}`, `hall 2: there are two halls called "A"`},
		{"halls whose names differ in case", LocationCreatedName, `{"id":"l","name":"n","halls":[{"name":"A","capacity":1},{"name":"a","capacity":1}]}`, ""},
	}
	// Every case above is about something other than dates: give it
	// valid ones. The cases below are about dates.
	for i, tc := range tests {
		tests[i].body = dated(tc.event, tc.body)
	}
	const booking = `{"id":"b","event_id":"e","user_id":"u","seats":1`
	const event = `{"id":"e","location_id":"l","hall":"h","capacity":1`
	tests = append(tests, []struct{ name, event, body, want string }{
		{"booking without a date (older events carry none)", EventBookedName, booking + `}`, ""},
		{"booking in year 0", EventBookedName, booking + `,"date":"0000-01-01T00:00:00Z"}`, "date must be after 1970-01-01"},
		{"booking in 1969", EventBookedName, booking + `,"date":"1969-12-31T23:59:59Z"}`, "date must be after 1970-01-01"},
		{"booking at the end of 9999", EventBookedName, booking + `,"date":"9999-12-31T23:59:59Z"}`, ""},
		{"booking just past the end of 9999", EventBookedName, booking + `,"date":"9999-12-31T23:59:59.9Z"}`, "got 9999-12-31T23:59:59.9Z"},
		{"event without dates (older events carry none)", EventCreatedName, event + `}`, ""},
		{"event starting in year 0", EventCreatedName, event + `,"start_date":"0000-01-01T00:00:00Z","end_date":"2027-01-15T07:00:00Z"}`, "start_date must be after 1970-01-01"},
		{"event ending before it starts", EventCreatedName, event + `,"start_date":"2027-01-15T08:00:00Z","end_date":"2027-01-15T07:00:00Z"}`, "end_date 2027-01-15T07:00:00Z is before start_date 2027-01-15T08:00:00Z"},
		{"event with a start and no end", EventCreatedName, event + `,"start_date":"2027-01-15T08:00:00Z"}`, "start_date and end_date come together"},
		{"event with an end and no start", EventCreatedName, event + `,"end_date":"2027-01-15T08:00:00Z"}`, "start_date and end_date come together"},
		{"event ending as it starts", EventCreatedName, event + `,"start_date":"2027-01-15T08:00:00Z","end_date":"2027-01-15T08:00:00Z"}`, ""},
	}...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := Decode(tc.event, []byte(tc.body))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Decode: %v, want it valid", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Decode accepted %+v, want an error containing %q", ev, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Decode: %v, want an error containing %q", err, tc.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Decode: %v does not wrap ErrInvalid", err)
			}
			// The Kafka envelope path refuses the same.
			value := []byte(`{"eventName":"` + tc.event + `","payload":` + tc.body + `}`)
			if _, _, err := Unwrap(value); err == nil || !errors.Is(err, ErrInvalid) {
				t.Errorf("Unwrap: %v, want an error wrapping ErrInvalid", err)
			}
		})
	}
}

// TestCheckersName: the errors say which field is wrong, in a sentence a
// client can act on.
func TestCheckersName(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{CheckSeats(0), "seats must be at least 1 and at most 1000, got 0"},
		{CheckCapacity(-5), "capacity must be at least 1 and at most 1000000, got -5"},
		{CheckID("user_id", ""), "user_id is required"},
		{CheckID("event id", "a\x00"), "event id holds a control character (U+0000) at byte 1"},
		{CheckText("name", "\xff"), "name is not valid UTF-8"},
	} {
		if tc.err == nil || tc.err.Error() != tc.want {
			t.Errorf("got %v, want %q", tc.err, tc.want)
		}
	}
	if err := CheckText("name", ""); err != nil {
		t.Errorf("empty text: %v", err)
	}
}

// dated adds valid dates to the body of an event.booked or event.created
// that has none.
func dated(event, body string) string {
	switch {
	case event == EventBookedName && !strings.Contains(body, `"date"`):
		return strings.TrimSuffix(body, "}") + `,"date":"2026-12-06T20:00:00Z"}`
	case event == EventCreatedName && !strings.Contains(body, `"start_date"`):
		return strings.TrimSuffix(body, "}") + `,"start_date":"2027-01-15T08:00:00Z","end_date":"2027-01-15T10:00:00Z"}`
	}
	return body
}

// TestCheckNoBidi: what the HTTP API refuses in a user_id, and what it
// keeps.
func TestCheckNoBidi(t *testing.T) {
	for s, want := range map[string]string{
		"alice":              "",
		"שלום":               "",
		"mallory\u202eecila": "user_id holds a bidirectional control character (U+202E) at byte 7",
		"u\u200f":            "(U+200F) at byte 1",
		"\u2066x\u2069":      "(U+2066) at byte 0",
	} {
		err := CheckNoBidi("user_id", s)
		switch {
		case want == "" && err != nil:
			t.Errorf("CheckNoBidi(%q) = %v, want nil", s, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("CheckNoBidi(%q) = %v, want an error containing %q", s, err, want)
		}
	}
}
