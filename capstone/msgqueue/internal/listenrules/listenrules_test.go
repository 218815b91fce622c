package listenrules

import (
	"errors"
	"strings"
	"testing"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
)

func TestLifecycle(t *testing.T) {
	var c Lifecycle
	stop, end, err := c.Begin(t.Context(), `queue "q"`)
	if err != nil {
		t.Fatalf("first Begin: %v", err)
	}
	if _, _, err := c.Begin(t.Context(), `queue "q"`); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second Begin while the first runs = %v, want 'already running'", err)
	}

	// Close closes Closing and ends stop at once, but Wait holds until the
	// Listen ends.
	if !c.Close() || c.Close() {
		t.Fatal("Close must report true once, then false")
	}
	select {
	case <-c.Closing():
	default:
		t.Fatal("Closing is still open after Close")
	}
	<-stop.Done()
	waited := make(chan struct{})
	go func() { c.Wait(); close(waited) }()
	select {
	case <-waited:
		t.Fatal("Wait returned while Listen was still running")
	default:
	}
	end()
	<-waited

	if _, _, err := c.Begin(t.Context(), `queue "q"`); !errors.Is(err, msgqueue.ErrClosed) {
		t.Fatalf("Begin after Close = %v, want ErrClosed", err)
	}
	if !c.Closed() {
		t.Fatal("Closed() is false after Close")
	}
}

func TestBeginAgainAfterEnd(t *testing.T) {
	var c Lifecycle
	for i := range 2 {
		stop, end, err := c.Begin(t.Context(), `queue "q"`)
		if err != nil {
			t.Fatalf("Begin %d: %v", i+1, err)
		}
		end()
		if stop.Err() == nil {
			t.Fatalf("stop of Begin %d is still open after end", i+1)
		}
	}
}

func TestBuilt(t *testing.T) {
	if _, err := Built(`queue "q"`, nil); err == nil || !strings.Contains(err.Error(), "no event names") {
		t.Fatalf("Built(none) = %v, want 'no event names'", err)
	}
	if _, err := Built(`queue "q"`, []string{"event.cancelled"}); err == nil {
		t.Fatal("Built accepted a name no contract has")
	}
	names := []string{contracts.EventBookedName}
	got, err := Built(`queue "q"`, names)
	if err != nil || len(got) != 1 || &got[0] == &names[0] {
		t.Fatalf("Built = %v, %v; want a copy of the names", got, err)
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
