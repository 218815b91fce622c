package main

import (
	"testing"

	"example.com/myevents/labs/labtest"
)

// TestBadFlagsAreRefusedBeforeDialing: names the broker would invent,
// refuse late or route to the capstone are refused first, with a sentence
// that says what to change (labkit.CheckNames), and so is an empty
// connection name, by which the lab finds its connections to close.
func TestBadFlagsAreRefusedBeforeDialing(t *testing.T) {
	labtest.RefusedBeforeDialing(t, run, append(labtest.NameFlags(),
		labtest.BadFlags{Args: []string{"-conn-name", ""}, Want: "-conn-name must not be empty"})...)
}
