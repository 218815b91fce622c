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
