package main

import (
	"testing"

	"example.com/myevents/labs/labtest"
)

// TestBadFlagsAreRefusedBeforeDialing: the capstone's topic, a topic name
// Kafka would refuse and an empty group prefix are refused before the lab connects,
// with a sentence that says what to change.
func TestBadFlagsAreRefusedBeforeDialing(t *testing.T) {
	labtest.RefusedBeforeDialingKafka(t, run, append(labtest.TopicFlags(),
		labtest.BadFlags{Args: []string{"-group", ""}, Want: "-group is empty"})...)
}
