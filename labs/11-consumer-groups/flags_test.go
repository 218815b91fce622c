package main

import (
	"testing"

	"example.com/myevents/labs/labtest"
)

// TestBadFlagsAreRefusedBeforeDialing: the capstone's topic, an empty
// topic and an empty group prefix are refused before the lab connects,
// with a sentence that says what to change.
func TestBadFlagsAreRefusedBeforeDialing(t *testing.T) {
	labtest.RefusedBeforeDialingKafka(t, run,
		labtest.BadFlags{Args: []string{"-topic", "events"}, Want: "is the capstone's topic"},
		labtest.BadFlags{Args: []string{"-topic", ""}, Want: "-topic is empty"},
		labtest.BadFlags{Args: []string{"-group", ""}, Want: "-group is empty"})
}
