package kafka

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// A replay listener reads from the oldest offset; CaughtUp closes once
// everything that was in the log at Listen is handled, and the listener
// then goes on with new events. Another replay listener reads it all again.
func TestReplayCaughtUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	em := e.emitter()
	before := ids("before", 30)
	for i, id := range before {
		e.emit(em, booked(id, fmt.Sprintf("ev-%d", i%10), i+1))
	}

	l := e.replayListener()
	s := newSeen()
	listen(t, l, s.handler)
	select {
	case <-l.CaughtUp():
	case <-time.After(wait):
		t.Fatalf("not caught up after %v: %s", wait, l.caught.describe())
	}
	// Caught up means handled, not merely fetched.
	if err := diff(before, s.distinct()); err != nil {
		t.Fatalf("at CaughtUp the handler had: %v", err)
	}
	// Per key, the log order.
	last := map[string]int{}
	for _, ev := range s.evs {
		b := ev.(*contracts.EventBooked)
		if b.Seats < last[b.EventID] {
			t.Errorf("key %s: %d after %d", b.EventID, b.Seats, last[b.EventID])
		}
		last[b.EventID] = b.Seats
	}

	after := ids("after", 5)
	for i, id := range after {
		e.emit(em, booked(id, fmt.Sprintf("ev-%d", i), 100+i))
	}
	all := append(slices.Clone(before), after...)
	brokertest.Eventually(t, wait, func() error { return diff(all, s.distinct()) })

	again := e.replayListener()
	s2 := newSeen()
	listen(t, again, s2.handler)
	select {
	case <-again.CaughtUp():
	case <-time.After(wait):
		t.Fatalf("second replay not caught up: %s", again.caught.describe())
	}
	if err := diff(all, s2.distinct()); err != nil {
		t.Errorf("second replay at CaughtUp: %v", err)
	}
}

// Replay starts at the oldest offset still stored, not at the literal 0:
// after the first records were deleted (as retention does), it still
// works, and CaughtUp still closes.
func TestReplayStartsAtOldestOffset(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	em := e.emitter(WithPartitions(1))
	all := ids("b", 10)
	for i, id := range all {
		e.emit(em, booked(id, "ev-1", i+1))
	}
	if err := e.adminClient().DeleteRecords(e.topic, map[int32]int64{0: 4}); err != nil {
		t.Fatalf("deleting the first 4 records: %v", err)
	}

	l := e.replayListener(WithPartitions(1))
	s := newSeen()
	listen(t, l, s.handler)
	select {
	case <-l.CaughtUp():
	case <-time.After(wait):
		t.Fatalf("not caught up: %s", l.caught.describe())
	}
	if got, want := s.snapshot(), all[4:]; !slices.Equal(got, want) {
		t.Errorf("replayed %v, want %v", got, want)
	}
}

// On an empty topic there is nothing to catch up with.
func TestReplayCaughtUpOnEmptyTopic(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.replayListener()
	listen(t, l, newSeen().handler)
	select {
	case <-l.CaughtUp():
	case <-time.After(wait):
		t.Fatalf("not caught up: %s", l.caught.describe())
	}
}

// In group mode CaughtUp closes once the partitions of the first session
// are handled up to where they ended at assignment; a member that resumes
// from committed offsets at the end is caught up without handling anything.
func TestGroupCaughtUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	group := brokertest.Name(t, "group")
	em := e.emitter()
	want := ids("b", 20)
	for i, id := range want {
		e.emit(em, booked(id, fmt.Sprintf("ev-%d", i%5), i+1))
	}

	first := e.groupListener(group)
	s := newSeen()
	stop := listen(t, first, s.handler)
	select {
	case <-first.CaughtUp():
	case <-time.After(wait):
		t.Fatalf("not caught up: %s", first.caught.describe())
	}
	if err := diff(want, s.distinct()); err != nil {
		t.Fatalf("at CaughtUp the handler had: %v", err)
	}
	stop()
	if err := first.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}

	second := e.groupListener(group)
	s2 := newSeen()
	listen(t, second, s2.handler)
	select {
	case <-second.CaughtUp():
	case <-time.After(wait):
		t.Fatalf("the resumed member is not caught up: %s", second.caught.describe())
	}
	if got := s2.snapshot(); len(got) != 0 {
		t.Errorf("the resumed member handled %v again", got)
	}
}
