package eventservice

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"example.com/myevents/capstone/internal/outbox"
	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/contracts"
)

// TestStore runs one specification against the memory, SQLite and
// PostgreSQL stores.
func TestStore(t *testing.T) {
	servicetest.ForEachStore(t, OpenStore, storeSpec)
}

func storeSpec(t *testing.T, s Store) {
	ctx := context.Background()
	hasOutbox := s.Outbox() != nil

	// An empty store finds nothing.
	if ls, err := s.Locations(ctx); err != nil || len(ls) != 0 {
		t.Fatalf("Locations() = %v, %v; want none", ls, err)
	}
	servicetest.WantIs(t, ErrNotFound, map[string]error{
		"Location(nope)":    servicetest.Err(s.Location(ctx, "nope")),
		"Event(nope)":       servicetest.Err(s.Event(ctx, "nope")),
		"EventByName(nope)": servicetest.Err(s.EventByName(ctx, "nope")),
	})

	// Locations come back as stored, halls in order, oldest first.
	l1 := Location{ID: "loc-1", Name: "Olympiastadion", Address: "Olympischer Platz 3", Country: "DE",
		OpenTime: 8, CloseTime: 23, Halls: []Hall{{"Main", 74475}, {"Foyer", 300}, {"Annex", 1}}}
	l2 := Location{ID: "loc-0", Name: "Empty lot", Halls: []Hall{}}
	for _, l := range []Location{l1, l2} {
		msg, err := s.AddLocation(ctx, l)
		if err != nil {
			t.Fatalf("AddLocation(%s): %v", l.ID, err)
		}
		checkMessage(t, msg, hasOutbox, locationCreated(l))
	}
	if got, err := s.Location(ctx, l1.ID); err != nil || !reflect.DeepEqual(got, l1) {
		t.Errorf("Location(%s) = %+v, %v; want %+v", l1.ID, got, err, l1)
	}
	if got, err := s.Locations(ctx); err != nil || !reflect.DeepEqual(got, []Location{l1, l2}) {
		t.Errorf("Locations() = %+v, %v; want l1, l2", got, err)
	}
	if _, err := s.AddLocation(ctx, l1); err == nil {
		t.Errorf("adding location %s twice succeeded", l1.ID)
	}

	// An event at an unknown location is refused and writes nothing.
	unsentBefore := servicetest.Unsent(t, s.Outbox())
	at := time.Date(2026, 11, 27, 20, 0, 0, 0, time.UTC)
	if _, err := s.AddEvent(ctx, Event{ID: "ev-x", Name: "Ghost", LocationID: "nowhere", Hall: "Main", Capacity: 10, StartDate: at, EndDate: at}); !errors.Is(err, ErrNotFound) {
		t.Errorf("AddEvent at an unknown location = %v, want ErrNotFound", err)
	}
	if evs, _ := s.Events(ctx); len(evs) != 0 || servicetest.Unsent(t, s.Outbox()) != unsentBefore {
		t.Errorf("a refused event left %d events, %d unsent messages (had %d)", len(evs), servicetest.Unsent(t, s.Outbox()), unsentBefore)
	}

	// Events come back as stored, oldest first; by name, the oldest wins.
	e1 := Event{ID: "ev-1", Name: "Aida", LocationID: l1.ID, Hall: "Main", Capacity: 74475, StartDate: at, EndDate: at.Add(3 * time.Hour), Duration: 180}
	e2 := Event{ID: "ev-0", Name: "Tosca", LocationID: l1.ID, Hall: "Foyer", Capacity: 300, StartDate: at.Add(24 * time.Hour), EndDate: at.Add(26 * time.Hour), Duration: 120}
	e3 := Event{ID: "ev-2", Name: "Aida", LocationID: l1.ID, Hall: "Foyer", Capacity: 300, StartDate: at.Add(48 * time.Hour), EndDate: at.Add(50 * time.Hour), Duration: 120}
	for _, e := range []Event{e1, e2, e3} {
		msg, err := s.AddEvent(ctx, e)
		if err != nil {
			t.Fatalf("AddEvent(%s): %v", e.ID, err)
		}
		checkMessage(t, msg, hasOutbox, eventCreated(e))
	}
	if got, err := s.Event(ctx, e1.ID); err != nil || !reflect.DeepEqual(got, e1) {
		t.Errorf("Event(%s) = %+v, %v; want %+v", e1.ID, got, err, e1)
	}
	if got, err := s.Events(ctx); err != nil || !reflect.DeepEqual(got, []Event{e1, e2, e3}) {
		t.Errorf("Events() = %+v, %v; want e1, e2, e3", got, err)
	}
	if got, err := s.EventByName(ctx, "Aida"); err != nil || got.ID != e1.ID {
		t.Errorf("EventByName(Aida) = %+v, %v; want %s", got, err, e1.ID)
	}
	if _, err := s.AddEvent(ctx, e1); err == nil {
		t.Errorf("adding event %s twice succeeded", e1.ID)
	}

	if hasOutbox {
		if n := servicetest.Unsent(t, s.Outbox()); n != 5 {
			t.Errorf("%d unsent messages, want 5 (2 locations, 3 events)", n)
		}
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

// checkMessage checks what an Add method prepared for the Publisher.
func checkMessage(t *testing.T, msg outbox.Message, hasOutbox bool, want contracts.Event) {
	t.Helper()
	if !reflect.DeepEqual(msg.Event, want) {
		t.Errorf("message event = %+v, want %+v", msg.Event, want)
	}
	if hasOutbox && (msg.ID == 0 || msg.Undo != nil) {
		t.Errorf("a store with an outbox gave ID %d, Undo %v", msg.ID, msg.Undo != nil)
	}
	if !hasOutbox && (msg.ID != 0 || msg.Undo == nil) {
		t.Errorf("a store without an outbox gave ID %d, Undo %v", msg.ID, msg.Undo != nil)
	}
}

func TestMemoryUndo(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore()
	lm, _ := s.AddLocation(ctx, Location{ID: "l", Name: "L", Halls: []Hall{{"H", 10}}})
	em, _ := s.AddEvent(ctx, Event{ID: "e", Name: "E", LocationID: "l", Hall: "H", Capacity: 10})
	if err := em.Undo(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lm.Undo(ctx); err != nil {
		t.Fatal(err)
	}
	if ls, _ := s.Locations(ctx); len(ls) != 0 {
		t.Errorf("locations after undo: %+v", ls)
	}
	if evs, _ := s.Events(ctx); len(evs) != 0 {
		t.Errorf("events after undo: %+v", evs)
	}
}

func TestOpenStoreRejectsUnknownDSN(t *testing.T) {
	s, err := OpenStore(context.Background(), "mysql://root@db/events")
	if err == nil || s != nil {
		t.Fatalf("OpenStore(mysql) = %v, %v; want nil and an error", s, err)
	}
}
