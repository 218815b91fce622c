package contracts

import (
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits every event keeps, checked by Validate. The services check the
// same limits at their HTTP edge (a request outside them is a 400) and in
// their stores, and a broker message outside them is poison: so seat
// arithmetic cannot wrap, every value fits a 64-bit SQL column, and every
// event fits a 64 KiB message.
const (
	// MaxSeats is the most seats one booking may take (at least 1).
	MaxSeats = 1000
	// MaxCapacity is the most seats a hall may have (at least 1).
	MaxCapacity = 1_000_000
	// MaxIDBytes bounds an ID (id, event_id, location_id) and user_id.
	MaxIDBytes = 200
	// MaxTextBytes bounds a name, an address, a country and a hall name.
	MaxTextBytes = 200
	// MaxHalls bounds the halls of one location.
	MaxHalls = 100
)

// CheckSeats reports seats outside 1..MaxSeats.
func CheckSeats(seats int) error {
	if seats < 1 || seats > MaxSeats {
		return fmt.Errorf("seats must be at least 1 and at most %d, got %d", MaxSeats, seats)
	}
	return nil
}

// CheckCapacity reports a hall capacity outside 1..MaxCapacity.
func CheckCapacity(capacity int) error {
	if capacity < 1 || capacity > MaxCapacity {
		return fmt.Errorf("capacity must be at least 1 and at most %d, got %d", MaxCapacity, capacity)
	}
	return nil
}

// firstDate and lastDate bound every date an event carries: after the
// Unix epoch (the HTTP API counts dates in Unix seconds from 1), up to
// the end of year 9999 (later ones cannot be written as RFC 3339 JSON,
// nor kept in the stores' microseconds).
var (
	firstDate = time.Unix(1, 0)
	lastDate  = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

// CheckDate reports a date outside firstDate..lastDate
// (1970-01-01T00:00:01Z to 9999-12-31T23:59:59Z), such as year 0. A date
// left out (the zero time.Time) passes: events published before dates
// were checked carry none. field names it in the error.
func CheckDate(field string, t time.Time) error {
	if !t.IsZero() && (t.Before(firstDate) || t.After(lastDate)) {
		return fmt.Errorf("%s must be after 1970-01-01 and before the end of year 9999, got %s", field, t.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// CheckID reports an ID (or user_id) that is empty, longer than MaxIDBytes
// or not clean text (see CheckText). field names it in the error.
func CheckID(field, id string) error {
	if id == "" {
		return fmt.Errorf("%s is required", field)
	}
	return checkString(field, id, MaxIDBytes)
}

// CheckNoBidi reports an identifier a client sends (a user_id) that holds
// a bidirectional control character (U+202E RIGHT-TO-LEFT OVERRIDE, U+200F
// RIGHT-TO-LEFT MARK, ...), which makes it display in another order than
// it is stored, so that two that look alike differ. Only the HTTP API
// asks it, of what it is about to store: an event from the broker
// records what another instance sold, whatever its text, and one
// accepted before this check existed is in the log for good; refusing it
// there would leave its seats uncounted. A name or an address may need
// such a character to show mixed right-to-left text right, and keeps it.
func CheckNoBidi(field, s string) error {
	if printableASCII(s) {
		return nil
	}
	for i, r := range s {
		if unicode.Is(unicode.Bidi_Control, r) {
			return fmt.Errorf("%s holds a bidirectional control character (%U) at byte %d, which would display it in another order than it is stored", field, r, i)
		}
	}
	return nil
}

// CheckText reports a name or address longer than MaxTextBytes or not clean
// text: invalid UTF-8, a control character (NUL, newline, ...) or U+FFFD,
// the replacement character a JSON decoder silently puts in place of
// invalid UTF-8 and of a lone surrogate escape such as "\ud800". Empty text
// passes; a caller that needs a value checks that itself.
func CheckText(field, text string) error { return checkString(field, text, MaxTextBytes) }

func checkString(field, s string, limit int) error {
	if len(s) > limit {
		return fmt.Errorf("%s is %d bytes long, more than the %d allowed", field, len(s), limit)
	}
	if printableASCII(s) {
		return nil // the common case, checked without decoding runes
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", field)
	}
	for i, r := range s {
		switch {
		case unicode.IsControl(r):
			return fmt.Errorf("%s holds a control character (%U) at byte %d", field, r, i)
		case r == utf8.RuneError:
			return fmt.Errorf("%s holds U+FFFD at byte %d (invalid UTF-8 or a lone surrogate escape was replaced)", field, i)
		}
	}
	return nil
}

// printableASCII reports whether s holds only the bytes 0x20 to 0x7e:
// valid UTF-8 without a control character or U+FFFD.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// firstError returns the first non-nil error.
func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
