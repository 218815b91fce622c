package contracts

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// CheckKeys checks body, valid JSON that decodes into v, for what
// encoding/json lets pass and other decoders read differently: a key
// that names a field of v only in another case ("Seats" for "seats",
// which encoding/json takes for seats and a Python or JavaScript client
// ignores), and a key twice in one object (encoding/json keeps the last,
// others may keep the first). With unknownOK, keys that no field of v
// has in any case are left alone (an event read from a broker may carry
// fields added later); without it, they are an error too (an HTTP
// request must name only what it means).
func CheckKeys(body []byte, v any, unknownOK bool) error {
	return exactKeys(json.NewDecoder(bytes.NewReader(body)), reflect.TypeOf(v), "", unknownOK)
}

// exactKeys reads the next JSON value from dec, which holds valid JSON,
// and checks what encoding/json lets pass: a key that names a field of
// t only in another case ("Seats" for "seats"), and a key twice in one
// object (the last one would win). where is the value's place in the
// body, for the error ("halls[2]").
func exactKeys(dec *json.Decoder, t reflect.Type, where string, unknownOK bool) error {
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
			if err := exactKeys(dec, next, join(where, key), unknownOK); err != nil {
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
			if err := exactKeys(dec, elem, fmt.Sprintf("%s[%d]", where, i), unknownOK); err != nil {
				return err
			}
		}
		_, err := dec.Token() // ']'
		return err
	}
	return nil
}

// decodesItself reports whether t (or a pointer to it) reads its own
// JSON, whose names are its own business.
func decodesItself(t reflect.Type) bool {
	for _, u := range []reflect.Type{reflect.TypeFor[json.Unmarshaler](), reflect.TypeFor[encoding.TextUnmarshaler]()} {
		if t.Implements(u) || reflect.PointerTo(t).Implements(u) {
			return true
		}
	}
	return false
}

// jsonFields adds the JSON names of struct type t's fields to fields,
// with their types, as encoding/json sees them: exported fields by their
// tag or name, and the fields of an embedded struct without a tag as if
// they were t's own (t's own win).
func jsonFields(t reflect.Type, fields map[string]reflect.Type) {
	var embedded []reflect.Type
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case name == "-":
			continue
		case f.Anonymous && name == "" && ft.Kind() == reflect.Struct:
			embedded = append(embedded, ft)
			continue
		case !f.IsExported():
			continue
		case name == "":
			name = f.Name
		}
		fields[name] = f.Type
	}
	for _, e := range embedded {
		promoted := map[string]reflect.Type{}
		jsonFields(e, promoted)
		for name, ft := range promoted {
			if _, own := fields[name]; !own {
				fields[name] = ft
			}
		}
	}
}

func join(where, key string) string {
	if where == "" {
		return key
	}
	return where + "." + key
}
