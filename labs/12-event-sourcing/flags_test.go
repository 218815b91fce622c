package main

import (
	"testing"

	"example.com/myevents/labs/labtest"
)

// TestBadFlagsAreRefusedBeforeConnecting: a topic name Kafka would turn
// into a confusing error, and the capstone's topic, are refused first,
// with a sentence that says what to change.
func TestBadFlagsAreRefusedBeforeConnecting(t *testing.T) {
	labtest.RefusedBeforeDialingKafka(t, run, append(labtest.TopicFlags(),
		labtest.BadFlags{Args: []string{"-replay-only", "-topic", ""}, Want: "-topic must name a topic"})...)
}
