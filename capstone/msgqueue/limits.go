package msgqueue

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxMessageSize is the largest message a transport emits or hands to a
// handler: an AMQP message (body and headers together), a Kafka record
// (key, value and headers together: RecordSize). Package contracts bounds
// every field, so most valid events fit many times over; a location with
// many halls of text that JSON escapes can still be larger, and is
// refused before it is stored. A larger message is poison, dead-lettered
// at once.
const MaxMessageSize = 64 << 10

// ErrTooLarge is wrapped by the error Emit returns for an event whose
// message would be larger than MaxMessageSize.
var ErrTooLarge = errors.New("msgqueue: message larger than 64 KiB")

// CheckSize reports a message of n bytes that is larger than
// MaxMessageSize, with an error wrapping ErrTooLarge.
func CheckSize(n int) error {
	if n > MaxMessageSize {
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, n)
	}
	return nil
}

// RecordSize is what MaxMessageSize bounds of an event's Kafka record as
// the emitters write it: the key (its partition key) and the value (its
// envelope); they write no headers. A listener counts the headers of what
// it reads too.
func RecordSize(key string, value []byte) int { return len(key) + len(value) }

// MessageID returns the message ID of the message that carries the event
// called name with this body: a hash of both, so every emit of the same
// event (a resend after a lost confirm, an outbox retry, an outbox resend
// after a restart) carries the same ID, and a consumer that deduplicates by
// message ID counts it once. Different events differ in their own IDs, so
// they get different message IDs.
func MessageID(name string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write(body)
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h.Sum(nil)[:16])
}

// Headers a listener puts on a dead-lettered copy of a message (AMQP
// headers, Kafka record headers), beside the headers it already had,
// except those whose names start with DeadLetterHeaderPrefix (a
// sender's own x-dlq-reason would read as the listener's). Transports
// add their own (where the message was read).
const (
	DeadLetterHeaderPrefix = "x-dlq-"

	HeaderReason       = "x-dlq-reason"        // one of the Reason constants
	HeaderError        = "x-dlq-error"         // the error text, at most MaxErrorHeader bytes
	HeaderAttempts     = "x-dlq-attempts"      // handler calls made (0: never handed over)
	HeaderEventName    = "x-dlq-event-name"    // the event name, when it had one
	HeaderOriginalSize = "x-dlq-original-size" // the body's size, when the copy holds less
	HeaderTruncated    = "x-dlq-truncated"     // "true" when the copy holds only the first MaxMessageSize bytes
)

// Why a message was dead-lettered (the value of HeaderReason).
const (
	ReasonMalformed        = "malformed-envelope"   // Kafka: not an envelope, or no eventName
	ReasonMissingName      = "missing-event-name"   // AMQP: no x-event-name header
	ReasonRoutingKey       = "routing-key-mismatch" // AMQP: the routing key is not the x-event-name
	ReasonUnknownEvent     = "unknown-event"        // an event name no contract has
	ReasonInvalidPayload   = "invalid-payload"      // the payload does not decode or validate
	ReasonTooLarge         = "too-large"            // larger than MaxMessageSize
	ReasonPermanent        = "permanent-error"      // the handler returned Permanent
	ReasonRetriesExhausted = "retries-exhausted"    // the handler failed on every attempt
)

// MaxErrorHeader bounds the HeaderError value.
const MaxErrorHeader = 1 << 10

// DeadLetterBody returns what a dead-letter copy carries of body: all of
// it up to MaxMessageSize, else its first MaxMessageSize bytes and true.
// So a copy always fits the broker's limits, even of a message that
// barely fitted them (its headers come on top).
func DeadLetterBody(body []byte) ([]byte, bool) {
	if len(body) <= MaxMessageSize {
		return body, false
	}
	return body[:MaxMessageSize], true
}

// ErrorHeader returns err's text for HeaderError, cut to MaxErrorHeader
// bytes at a UTF-8 boundary.
func ErrorHeader(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) <= MaxErrorHeader {
		return s
	}
	cut := MaxErrorHeader - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
