package main

import (
	"testing"

	"example.com/myevents/labs/labtest"
)

// TestBadFlagsAreRefusedBeforeDialing: names the broker would invent,
// refuse late or route to the capstone are refused first, with a sentence
// that says what to change (labkit.CheckNames).
func TestBadFlagsAreRefusedBeforeDialing(t *testing.T) {
	labtest.RefusedBeforeDialing(t, run, labtest.NameFlags()...)
}
