package outbox_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"example.com/myevents/capstone/internal/outbox"
	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/labs/brokertest"
)

// TestMarksAreWrittenTogether: Publish returns before its mark is written;
// the marks then reach the store, and none is lost.
func TestMarksAreWrittenTogether(t *testing.T) {
	store := newFakeStore()
	p := outbox.NewPublisher(store, &servicetest.Emitter{}, fast())
	defer p.Close()
	for i := range int64(20) {
		msg := store.add(i+1, booked(fmt.Sprint("b", i+1)), time.Now().Add(outbox.Grace))
		if err := p.Publish(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
	brokertest.Eventually(t, 5*time.Second, func() error {
		if n, _ := store.Unsent(context.Background()); n != 0 {
			return fmt.Errorf("%d unsent", n)
		}
		return nil
	})
}

// TestTakenMarksRideAlong: a service's transaction takes the marks
// (TakeMarks); if it fails, ReturnMarks hands them back and Close writes
// them, so a failed transaction loses none.
func TestTakenMarksRideAlong(t *testing.T) {
	store := newFakeStore()
	opt := fast()
	opt.MarkLinger = time.Hour // only the service, or Close, writes them
	p := outbox.NewPublisher(store, &servicetest.Emitter{}, opt)
	for i := range int64(3) {
		msg := store.add(i+1, booked(fmt.Sprint("b", i+1)), time.Now().Add(outbox.Grace))
		if err := p.Publish(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
	taken := p.TakeMarks()
	slices.Sort(taken)
	if !slices.Equal(taken, []int64{1, 2, 3}) {
		t.Fatalf("TakeMarks = %v, want [1 2 3]", taken)
	}
	if again := p.TakeMarks(); len(again) != 0 {
		t.Fatalf("TakeMarks again = %v, want none", again)
	}
	if n, _ := store.Unsent(context.Background()); n != 3 {
		t.Fatalf("%d unsent, want 3: nobody wrote the marks yet", n)
	}
	p.ReturnMarks(taken) // the service's transaction failed
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if n, _ := store.Unsent(context.Background()); n != 0 {
		t.Fatalf("%d unsent after Close, want 0", n)
	}
}
