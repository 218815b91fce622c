package main

import (
	"testing"

	"example.com/myevents/labs/labtest"
)

// TestBadFlagsAreRefusedBeforeDialing: the capstone's topic, an empty
// topic and an empty group are refused before the lab connects, with a
// sentence that says what to change. (An empty group used to fail only
// after the lab had produced and replayed, with "The provided group id
// was empty".)
func TestBadFlagsAreRefusedBeforeDialing(t *testing.T) {
	labtest.RefusedBeforeDialingKafka(t, run,
		labtest.BadFlags{Args: []string{"-topic", "events"}, Want: "is the capstone's topic"},
		labtest.BadFlags{Args: []string{"-topic", ""}, Want: "-topic is empty"},
		labtest.BadFlags{Args: []string{"-group", ""}, Want: "-group is empty"})
}
