package backoff

import (
	"context"
	"testing"
	"time"
)

func TestDelayDoublesUpToTheLongest(t *testing.T) {
	p := Policy{First: 100 * time.Millisecond, Longest: time.Second}
	for i, want := range []time.Duration{100, 100, 200, 400, 800, 1000, 1000} {
		n := i // 0 counts as 1
		if got := p.Delay(n); got != want*time.Millisecond {
			t.Errorf("Delay(%d) = %v, want %v", n, got, want*time.Millisecond)
		}
	}
	if got := p.Delay(1 << 20); got != time.Second {
		t.Errorf("Delay(a million) = %v, want the longest, 1s", got)
	}
}

func TestJitterStretchesByAtMostAQuarter(t *testing.T) {
	p := Policy{First: 400 * time.Millisecond, Longest: time.Second, Jitter: true}
	for n := 1; n <= 5; n++ {
		base := Policy{First: p.First, Longest: p.Longest}.Delay(n)
		for range 50 {
			if got := p.Delay(n); got < base || got > base+base/4 {
				t.Fatalf("Delay(%d) with jitter = %v, want within [%v, %v]", n, got, base, base+base/4)
			}
		}
	}
}

func TestSleepEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep waited out an hour on an ended context")
	}
	if !Sleep(t.Context(), 0) {
		t.Fatal("Sleep(0) reported an ended context")
	}
}
