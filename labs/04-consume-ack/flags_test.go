package main

import (
	"testing"

	"example.com/myevents/labs/labtest"
)

// TestBadFlagsAreRefusedBeforeDialing: flags the broker would turn into a
// confusing error, and the capstone's exchange, are refused first, with a
// sentence that says what to change.
func TestBadFlagsAreRefusedBeforeDialing(t *testing.T) {
	labtest.RefusedBeforeDialing(t, run, append(labtest.NameFlags(),
		labtest.BadFlags{Args: []string{"-prefetch", "70000"}, Want: "between 1 and 65535"},
		labtest.BadFlags{Args: []string{"-prefetch", "0"}, Want: "between 1 and 65535"})...)
}
