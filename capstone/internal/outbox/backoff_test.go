package outbox

import (
	"testing"
	"time"
)

func TestBackoffDoublesUpToTheMaximum(t *testing.T) {
	o := Options{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}.withDefaults()
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := o.backoff(i + 1); got != w*time.Millisecond {
			t.Errorf("backoff(%d) = %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	if d := (Options{}).withDefaults(); d.EmitTimeout >= Grace {
		t.Errorf("the default emit timeout %v must be shorter than Grace %v", d.EmitTimeout, Grace)
	}
}

// TestDefaultBackoffLooksAgainWithinSeconds: after a broker outage of a
// few minutes the relay waited out its backoff, up to a minute, before it
// looked again: a review saw /healthz answer 503 "events have not reached
// the broker" and events wait 12 to 20 s after the broker was back and
// the emitter reconnected. Nothing tells the relay the broker is back, so
// the longest wait by default is a few seconds: a retry costs one emit
// that waits EmitTimeout for a connection.
func TestDefaultBackoffLooksAgainWithinSeconds(t *testing.T) {
	o := Options{}.withDefaults()
	for n := 1; n <= 30; n++ {
		if got := o.backoff(n); got > 5*time.Second {
			t.Fatalf("backoff(%d) = %v by default, want at most 5s", n, got)
		}
	}
}
