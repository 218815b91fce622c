package msgqueue

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestLifecycle(t *testing.T) {
	var c Lifecycle
	end, err := c.Begin(`queue "q"`)
	if err != nil {
		t.Fatalf("first Begin: %v", err)
	}
	if _, err := c.Begin(`queue "q"`); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second Begin while the first runs = %v, want 'already running'", err)
	}

	// Close closes Closing at once, but Wait holds until the Listen ends.
	if !c.Close() || c.Close() {
		t.Fatal("Close must report true once, then false")
	}
	select {
	case <-c.Closing():
	default:
		t.Fatal("Closing is still open after Close")
	}
	waited := make(chan struct{})
	go func() { c.Wait(); close(waited) }()
	select {
	case <-waited:
		t.Fatal("Wait returned while Listen was still running")
	case <-time.After(50 * time.Millisecond):
	}
	end()
	<-waited

	if _, err := c.Begin(`queue "q"`); !errors.Is(err, ErrClosed) {
		t.Fatalf("Begin after Close = %v, want ErrClosed", err)
	}
	if !c.Closed() {
		t.Fatal("Closed() is false after Close")
	}
}

func TestFilter(t *testing.T) {
	built := []string{"a", "b"}
	all, err := Filter(built, nil)
	if err != nil || len(all) != 2 || !all["a"] || !all["b"] {
		t.Fatalf("Filter(built, none) = %v, %v; want every built name", all, err)
	}
	one, err := Filter(built, []string{"b"})
	if err != nil || len(one) != 1 || !one["b"] {
		t.Fatalf("Filter(built, [b]) = %v, %v", one, err)
	}
	if _, err := Filter(built, []string{"c"}); err == nil || !strings.Contains(err.Error(), "c is not among") {
		t.Fatalf("Filter(built, [c]) = %v, want an error naming c", err)
	}
}
