package contracts

import (
	"bytes"
	"strconv"
	"time"
)

// A replay reads bookings by the hundred thousand, and json.Unmarshal
// spends most of a booking's decoding time on its generality: a scan for
// validity, then reflection, key by key. decodeFlat reads the flat
// contracts (EventBooked, EventCreated) in the one form json.Marshal
// writes them, keys in field order, no spaces, no escapes, in a single
// pass. Anything else, any doubt at all, reports false and Decode takes
// json.Unmarshal, so both ways give the same event or the same error:
// FuzzDecode checks that on every input it tries.

// decodeFlat decodes body as json.Marshal writes the named event, or
// reports false. body is valid UTF-8 (Decode checks it first).
func decodeFlat(name string, body []byte) (Event, bool) {
	r := flatReader{b: body, ok: true}
	switch name {
	case EventBookedName:
		id, eventID, userID := r.str(`{"id":`), r.str(`,"event_id":`), r.str(`,"user_id":`)
		e := EventBooked{Seats: r.int(`,"seats":`), Date: r.time(`,"date":`)}
		if r.end() {
			s := shared(id, eventID, userID)
			e.ID, e.EventID, e.UserID = s[0], s[1], s[2]
			return &e, true
		}
	case EventCreatedName:
		id, name, locationID, hall := r.str(`{"id":`), r.str(`,"name":`), r.str(`,"location_id":`), r.str(`,"hall":`)
		e := EventCreated{Capacity: r.int(`,"capacity":`), StartDate: r.time(`,"start_date":`), EndDate: r.time(`,"end_date":`)}
		if r.end() {
			s := shared(id, name, locationID, hall)
			e.ID, e.Name, e.LocationID, e.Hall = s[0], s[1], s[2], s[3]
			return &e, true
		}
	}
	return nil, false
}

// shared returns the strings of up to four fields, made with one
// allocation instead of one each: a replay keeps every booking's IDs.
func shared(fields ...[]byte) (s [4]string) {
	var buf [256]byte
	b := buf[:0]
	for _, f := range fields {
		b = append(b, f...)
	}
	all := string(b)
	for i, f := range fields {
		s[i], all = all[:len(f)], all[len(f):]
	}
	return s
}

// flatReader reads one flat JSON object front to back. Once something
// is not as expected, ok is false and every read returns a zero value.
type flatReader struct {
	b  []byte
	ok bool
}

// key consumes the literal that opens a field (`{"id":` or `,"seats":`).
func (r *flatReader) key(k string) {
	if r.ok && len(r.b) >= len(k) && string(r.b[:len(k)]) == k {
		r.b = r.b[len(k):]
		return
	}
	r.ok = false
}

// quoted consumes a string without escapes or control characters and
// returns it with its quotes.
func (r *flatReader) quoted(k string) []byte {
	r.key(k)
	if !r.ok || len(r.b) == 0 || r.b[0] != '"' {
		r.ok = false
		return nil
	}
	for i := 1; i < len(r.b); i++ {
		switch c := r.b[i]; {
		case c == '"':
			q := r.b[:i+1]
			r.b = r.b[i+1:]
			return q
		case c == '\\' || c < 0x20:
			r.ok = false
			return nil
		}
	}
	r.ok = false
	return nil
}

// str consumes a string as quoted does and returns it without its
// quotes, in place.
func (r *flatReader) str(k string) []byte {
	q := r.quoted(k)
	if !r.ok {
		return nil
	}
	return q[1 : len(q)-1]
}

// int consumes an integer as JSON writes it: an optional minus, then 0 or
// digits that do not start with 0, within the range of int.
func (r *flatReader) int(k string) int {
	r.key(k)
	if !r.ok {
		return 0
	}
	i := 0
	if i < len(r.b) && r.b[i] == '-' {
		i++
	}
	digits := i
	for i < len(r.b) && r.b[i] >= '0' && r.b[i] <= '9' {
		i++
	}
	if i == digits || (r.b[digits] == '0' && i > digits+1) {
		r.ok = false
		return 0
	}
	n, err := strconv.Atoi(string(r.b[:i]))
	if err != nil {
		r.ok = false
		return 0
	}
	r.b = r.b[i:]
	return n
}

// time consumes a quoted time and parses it as json.Unmarshal does, with
// time.Time's own UnmarshalJSON.
func (r *flatReader) time(k string) time.Time {
	var t time.Time
	q := r.quoted(k)
	if r.ok && t.UnmarshalJSON(q) != nil {
		r.ok = false
	}
	return t
}

// end consumes the closing brace and reports whether everything was read
// as expected, with nothing but white space after it.
func (r *flatReader) end() bool {
	r.key("}")
	return r.ok && len(bytes.TrimLeft(r.b, " \t\r\n")) == 0
}
