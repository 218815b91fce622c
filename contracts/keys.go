package contracts

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"
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
//
// It reads body once, front to back, without a tokenizer: every request
// and every event not written as Wrap writes it goes through here, and
// encoding/json's Decoder.Token made that 5 times slower than decoding
// the event itself (keys_oracle_test.go keeps that first version, which
// FuzzCheckKeys compares this one with). It reads no numbers: one beyond
// float64 in a field v does not have (1e400), which the tokenizer
// refused, passes, as encoding/json decodes it.
func CheckKeys(body []byte, v any, unknownOK bool) error {
	s := keyScanner{b: body, unknownOK: unknownOK}
	var t reflect.Type
	if v != nil {
		t = reflect.TypeOf(v)
	}
	return s.value(t)
}

// keyScanner reads one JSON value for CheckKeys.
type keyScanner struct {
	b         []byte
	i         int // the next byte to read
	unknownOK bool
	path      []pathStep // where the value being read is, for an error
}

// pathStep is one step of a place in the body: a key, or an index.
type pathStep struct {
	key   string
	index int // when key is ""
	isKey bool
}

// where is the value's place in the body, as the error names it
// (" in halls[2].name"), or "" at the top.
func (s *keyScanner) where() string {
	w := ""
	for _, p := range s.path {
		switch {
		case !p.isKey:
			w += fmt.Sprintf("[%d]", p.index)
		case w == "":
			w = p.key
		default:
			w += "." + p.key
		}
	}
	if w == "" {
		return ""
	}
	return " in " + w
}

// errMalformed is CheckKeys' answer to a body that is not valid JSON,
// which its callers have decoded first.
var errMalformed = errors.New("json: malformed body")

func (s *keyScanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

// value reads the next JSON value, which decodes into t (nil: no type
// whose names matter; only repeated keys are checked inside).
func (s *keyScanner) value(t reflect.Type) error {
	s.space()
	if s.i >= len(s.b) {
		return errMalformed
	}
	var kt *keyType
	if t != nil {
		kt = keyTypeOf(t)
	}
	switch s.b[s.i] {
	case '{':
		return s.object(kt)
	case '[':
		return s.array(kt)
	case '"':
		_, err := s.str()
		return err
	}
	for s.i < len(s.b) { // a number, true, false or null
		switch s.b[s.i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return nil
		}
		s.i++
	}
	return nil
}

// object reads an object whose keys name the fields of kt.
func (s *keyScanner) object(kt *keyType) error {
	s.i++ // '{'
	var fields map[string]reflect.Type
	var elem reflect.Type
	if kt != nil {
		switch kt.kind {
		case reflect.Struct:
			fields = kt.fields
		case reflect.Map:
			elem = kt.elem
		}
	}
	var seen keySet
	s.space()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return nil
	}
	for {
		s.space()
		raw, err := s.str()
		if err != nil {
			return err
		}
		key, err := decodeKey(raw)
		if err != nil {
			return err
		}
		if seen.addOnce(key) {
			return fmt.Errorf("the key %q appears twice%s", key, s.where())
		}
		next := elem
		if fields != nil {
			ft, ok := fields[string(key)]
			switch {
			case ok:
				next = ft
			case !s.unknownOK:
				return fmt.Errorf("json: unknown field %q%s (names are exact, in snake_case)", key, s.where())
			default:
				// A key no field has is left alone, but not one
				// encoding/json would take for a field.
				for name := range fields {
					if strings.EqualFold(name, string(key)) {
						return fmt.Errorf("the key %q%s is not %q (names are exact, in snake_case)", key, s.where(), name)
					}
				}
			}
		}
		s.space()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return errMalformed
		}
		s.i++
		if end, err := s.member(pathStep{key: string(key), isKey: true}, next, '}'); end || err != nil {
			return err
		}
	}
}

// array reads an array whose elements decode into kt's elements.
func (s *keyScanner) array(kt *keyType) error {
	s.i++ // '['
	var elem reflect.Type
	if kt != nil && (kt.kind == reflect.Slice || kt.kind == reflect.Array) {
		elem = kt.elem
	}
	s.space()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return nil
	}
	for n := 0; ; n++ {
		if end, err := s.member(pathStep{index: n}, elem, ']'); end || err != nil {
			return err
		}
	}
}

// member reads one value of an object or array, at step of the body,
// then the comma after it or the closing bracket; it reports whether
// that was the closing bracket.
func (s *keyScanner) member(step pathStep, t reflect.Type, closing byte) (bool, error) {
	s.path = append(s.path, step)
	err := s.value(t)
	s.path = s.path[:len(s.path)-1]
	if err != nil {
		return false, err
	}
	s.space()
	if s.i >= len(s.b) {
		return false, errMalformed
	}
	s.i++
	switch s.b[s.i-1] {
	case ',':
		return false, nil
	case closing:
		return true, nil
	}
	return false, errMalformed
}

// str reads a string and returns it with its quotes, as written.
func (s *keyScanner) str() ([]byte, error) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, errMalformed
	}
	for j := s.i + 1; j < len(s.b); j++ {
		switch s.b[j] {
		case '\\':
			j++ // the escaped byte is no closing quote
		case '"':
			q := s.b[s.i : j+1]
			s.i = j + 1
			return q, nil
		}
	}
	return nil, errMalformed
}

// decodeKey returns a quoted key as encoding/json reads it: as written
// between its quotes, or, with an escape or invalid UTF-8 in it, decoded
// (so "\u0061" and "a" are the same key, as they are to every decoder).
func decodeKey(quoted []byte) ([]byte, error) {
	raw := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return raw, nil
	}
	var k string
	if err := json.Unmarshal(quoted, &k); err != nil {
		return nil, err
	}
	return []byte(k), nil
}

// keySet is the keys of one object so far: a few, compared one by one,
// or, past smallKeys, a map.
type keySet struct {
	few  [][]byte
	many map[string]bool
}

const smallKeys = 16

// addOnce adds key and reports whether it was there already.
func (k *keySet) addOnce(key []byte) bool {
	if k.many != nil {
		if k.many[string(key)] {
			return true
		}
		k.many[string(key)] = true
		return false
	}
	for _, f := range k.few {
		if bytes.Equal(f, key) {
			return true
		}
	}
	if len(k.few) < smallKeys {
		k.few = append(k.few, key)
		return false
	}
	k.many = make(map[string]bool, 2*smallKeys)
	for _, f := range k.few {
		k.many[string(f)] = true
	}
	k.many[string(key)] = true
	return false
}

// keyType is what CheckKeys needs of a Go type, worked out once per type.
type keyType struct {
	kind   reflect.Kind            // Struct, Map, Slice, Array; 0 for a type that reads its own JSON
	fields map[string]reflect.Type // a struct's JSON names (jsonFields)
	elem   reflect.Type            // a map's, slice's or array's elements
}

var keyTypes sync.Map // reflect.Type (no pointer) -> *keyType

func keyTypeOf(t reflect.Type) *keyType {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if kt, ok := keyTypes.Load(t); ok {
		return kt.(*keyType)
	}
	kt := &keyType{}
	if !decodesItself(t) { // its own names: only the repeated keys are checked
		switch kt.kind = t.Kind(); kt.kind {
		case reflect.Struct:
			kt.fields = map[string]reflect.Type{}
			jsonFields(t, kt.fields)
		case reflect.Map, reflect.Slice, reflect.Array:
			kt.elem = t.Elem()
		}
	}
	keyTypes.Store(t, kt)
	return kt
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
