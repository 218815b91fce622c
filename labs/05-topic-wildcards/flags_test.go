package main

import (
	"testing"

	"example.com/myevents/labs/labtest"
)

// TestBadFlagsAreRefusedBeforeDialing: an -exchange that is empty (the
// broker's default exchange), starts with "amq." (the broker's own) or is
// the capstone's ("events", whose queue BookingService would take this
// lab's event.created messages from) is refused before anything is dialed.
func TestBadFlagsAreRefusedBeforeDialing(t *testing.T) {
	labtest.RefusedBeforeDialing(t, run, labtest.ExchangeFlags()...)
}
