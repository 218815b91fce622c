package main

import (
	"testing"

	"example.com/myevents/labs/labtest"
)

// TestBadFlagsAreRefusedBeforeDialing: flags the broker would turn into a
// confusing error are refused first, with a sentence that says what to
// change.
func TestBadFlagsAreRefusedBeforeDialing(t *testing.T) {
	labtest.RefusedBeforeDialing(t, run,
		labtest.BadFlags{Args: []string{"-queue", ""}, Want: "must name queues"},
		labtest.BadFlags{Args: []string{"-events", "lab07.seats"}, Want: "two queues"})
}
