package main

import (
	"testing"

	"example.com/myevents/labs/labtest"
)

// TestBadFlagsAreRefusedBeforeDialing: names the broker would invent,
// refuse late or route to the capstone are refused first, with a sentence
// that says what to change.
func TestBadFlagsAreRefusedBeforeDialing(t *testing.T) {
	labtest.RefusedBeforeDialing(t, run,
		labtest.BadFlags{Args: []string{"-queue", ""}, Want: "-queue must name a queue"},
		labtest.BadFlags{Args: []string{"-queue", "amq.mine"}, Want: "-queue must name a queue"},
		labtest.BadFlags{Args: []string{"-exchange", ""}, Want: "-exchange must name an exchange"},
		labtest.BadFlags{Args: []string{"-exchange", "amq.mine"}, Want: "-exchange must name an exchange"},
		labtest.BadFlags{Args: []string{"-exchange", "events"}, Want: "-exchange events is the capstone's exchange"})
}
