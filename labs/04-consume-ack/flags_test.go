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
		labtest.BadFlags{Args: []string{"-prefetch", "70000"}, Want: "between 1 and 65535"},
		labtest.BadFlags{Args: []string{"-prefetch", "0"}, Want: "between 1 and 65535"},
		labtest.BadFlags{Args: []string{"-queue", ""}, Want: "-queue must name a queue"},
		labtest.BadFlags{Args: []string{"-queue", "amq.mine"}, Want: "-queue must name a queue"},
		labtest.BadFlags{Args: []string{"-exchange", ""}, Want: "-exchange must name an exchange"},
		labtest.BadFlags{Args: []string{"-exchange", "amq.mine"}, Want: "-exchange must name an exchange"},
		labtest.BadFlags{Args: []string{"-exchange", "events"}, Want: "-exchange events is the capstone's exchange"})
}
