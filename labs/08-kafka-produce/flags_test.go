package main

import (
	"testing"

	"example.com/myevents/labs/labtest"
)

// TestBadFlagsAreRefusedBeforeDialing: the capstone's topic and a topic
// name Kafka would refuse are refused before the lab connects, with a
// sentence that says what to change.
func TestBadFlagsAreRefusedBeforeDialing(t *testing.T) {
	labtest.RefusedBeforeDialingKafka(t, run, labtest.TopicFlags()...)
}
