package main

import (
	"io"
	"strings"
	"testing"
)

// TestBadFlagsAreRefusedBeforeConnecting: a topic name Kafka would turn
// into a confusing error is refused first, with a sentence that says what
// to change. -brokers points at a port nobody listens on, so a check that
// came after connecting would fail with the connection error instead.
func TestBadFlagsAreRefusedBeforeConnecting(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // a part of the error
	}{
		{[]string{"-topic", ""}, "-topic must name a topic"},
		{[]string{"-topic", "lab12 users"}, "-topic must name a topic"},
		{[]string{"-topic", ".."}, "-topic must name a topic"},
		{[]string{"-topic", strings.Repeat("u", 250)}, "-topic must name a topic"},
		{[]string{"-replay-only", "-topic", ""}, "-topic must name a topic"},
		{[]string{"-topic", "events"}, "-topic events is the capstone's topic"},
	} {
		args := append([]string{"-brokers", "127.0.0.1:1"}, tc.args...)
		if err := run(t.Context(), args, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %q = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}
