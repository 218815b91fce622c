package main

import (
	"strings"
	"testing"

	"example.com/myevents/labs/labtest"
)

// TestBadFlagsAreRefusedBeforeConnecting: a topic name Kafka would turn
// into a confusing error, and the capstone's topic, are refused first,
// with a sentence that says what to change.
func TestBadFlagsAreRefusedBeforeConnecting(t *testing.T) {
	labtest.RefusedBeforeDialingKafka(t, run,
		labtest.BadFlags{Args: []string{"-topic", ""}, Want: "-topic must name a topic"},
		labtest.BadFlags{Args: []string{"-topic", "lab12 users"}, Want: "-topic must name a topic"},
		labtest.BadFlags{Args: []string{"-topic", ".."}, Want: "-topic must name a topic"},
		labtest.BadFlags{Args: []string{"-topic", strings.Repeat("u", 250)}, Want: "-topic must name a topic"},
		labtest.BadFlags{Args: []string{"-replay-only", "-topic", ""}, Want: "-topic must name a topic"},
		labtest.BadFlags{Args: []string{"-topic", "events"}, Want: "-topic events is the capstone's topic"})
}
