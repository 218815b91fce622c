package contracts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// exactKeysByTokens is CheckKeys as it was first written, with
// encoding/json's tokenizer: the oracle FuzzCheckKeys compares the
// faster scanner with. It reads the next JSON value from dec, which holds valid JSON,
// and checks what encoding/json lets pass: a key that names a field of
// t only in another case ("Seats" for "seats"), and a key twice in one
// object (the last one would win). where is the value's place in the
// body, for the error ("halls[2]").
func exactKeysByTokens(dec *json.Decoder, t reflect.Type, where string, unknownOK bool) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	in := ""
	if where != "" {
		in = " in " + where
	}
	if t != nil && decodesItself(t) {
		t = nil // its own names: only the repeated keys are checked
	}
	switch tok {
	case json.Delim('{'):
		var fields map[string]reflect.Type
		if t != nil && t.Kind() == reflect.Struct {
			fields = map[string]reflect.Type{}
			jsonFields(t, fields)
		}
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := tok.(string)
			if seen[key] {
				return fmt.Errorf("the key %q appears twice%s", key, in)
			}
			seen[key] = true
			var next reflect.Type
			if fields != nil {
				ft, ok := fields[key]
				switch {
				case ok:
					next = ft
				case !unknownOK:
					return fmt.Errorf("json: unknown field %q%s (names are exact, in snake_case)", key, in)
				default:
					// A key no field has is left alone, but not one
					// encoding/json would take for a field.
					for name := range fields {
						if strings.EqualFold(name, key) {
							return fmt.Errorf("the key %q%s is not %q (names are exact, in snake_case)", key, in, name)
						}
					}
				}
			} else if t != nil && t.Kind() == reflect.Map {
				next = t.Elem()
			}
			if err := exactKeysByTokens(dec, next, join(where, key), unknownOK); err != nil {
				return err
			}
		}
		_, err := dec.Token() // '}'
		return err
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := exactKeysByTokens(dec, elem, fmt.Sprintf("%s[%d]", where, i), unknownOK); err != nil {
				return err
			}
		}
		_, err := dec.Token() // ']'
		return err
	}
	return nil
}

func join(where, key string) string {
	if where == "" {
		return key
	}
	return where + "." + key
}

// keyTargets are the types FuzzCheckKeys checks bodies against: the
// envelope, every contract, and types with maps, slices and a field that
// reads its own JSON.
var keyTargets = []any{
	&Envelope{}, &EventBooked{}, &EventCreated{}, &LocationCreated{},
	&struct {
		Name  string            `json:"name"`
		Rows  []struct{ N int } `json:"rows"`
		Price map[string]struct {
			Value int `json:"value"`
		} `json:"price"`
		Raw json.RawMessage `json:"raw"`
		Any any             `json:"any"`
	}{},
	map[string]any{},
}

// FuzzCheckKeys: on every body that decodes into a target type, both
// unknownOK settings, CheckKeys answers as the first, tokenizer-based
// version did: the same error text, or none; except that a number beyond
// float64 where the type holds no number (1e400 in an unknown field) is
// no longer an error.
func FuzzCheckKeys(f *testing.F) {
	for _, seed := range []string{
		`{"id":"b","event_id":"e","user_id":"u","seats":1,"date":"2026-12-06T20:00:00Z"}`,
		`{"id":"b","id":"b2"}`, `{"Seats":700,"seats":1}`, `{"ID":"x"}`, `{"\u0069d":"x","id":"y"}`,
		`{"eventName":"event.booked","payload":{"id":"b","id":"c"}}`, `{"eventName" : "x" , "payload" : [ {"a":1,"a":2} ] }`,
		`{"name":"a","rows":[{"N":1},{"n":2,"n":3}],"price":{"eur":{"value":1,"Value":2}}}`,
		`{"raw":{"a":1,"a":2}}`, `{"any":{"k":[{"x":1,"X":2}]}}`, `[1,2,{"a":{}}]`, `"text"`, `null`, `{}`, `[]`,
		"{\"\xff\":1,\"\xfe\":2}", `{"a\"b":1,"a\"b":2}`, `{"halls":[{"name":"Main","capacity":1,"Capacity":2}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Add([]byte(`{"id":"b","event_id":"e","user_id":"u","seats":1,"note":1e400}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range keyTargets {
			// CheckKeys' callers give it a body that decoded into v.
			into := reflect.New(reflect.TypeOf(v))
			if json.Unmarshal(body, into.Interface()) != nil {
				continue
			}
			for _, unknownOK := range []bool{false, true} {
				want := exactKeysByTokens(json.NewDecoder(bytes.NewReader(body)), reflect.TypeOf(v), "", unknownOK)
				got := CheckKeys(body, v, unknownOK)
				if got == nil && want != nil && strings.Contains(want.Error(), "cannot unmarshal number") {
					// The one known difference: the tokenizer turned every
					// number into a float64 and failed on one beyond it
					// (1e400) where v has no such field, or holds it raw;
					// encoding/json decodes such a body, and so does the
					// scanner, which reads no numbers.
					continue
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("CheckKeys(%q, %T, unknownOK %v) = %v; the tokenizer's version says %v", body, v, unknownOK, got, want)
				}
			}
		}
	})
}
