package main

import (
	"io"
	"strings"
	"testing"
)

// TestBadFlagsAreRefusedBeforeDialing: a flag the broker would turn into a
// confusing error is refused first, with a sentence that says what to
// change; nothing is dialed (the URL points at a port nobody listens on).
func TestBadFlagsAreRefusedBeforeDialing(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-prefetch", "70000"}, "between 1 and 65535"},
		{[]string{"-prefetch", "0"}, "between 1 and 65535"},
	} {
		args := append([]string{"-url", "amqp://guest:guest@127.0.0.1:1/"}, tc.args...)
		err := run(t.Context(), args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %q = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}
