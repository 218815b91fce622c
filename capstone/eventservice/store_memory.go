package eventservice

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"example.com/myevents/capstone/internal/outbox"
	"example.com/myevents/capstone/internal/sqldb"
)

// MemoryStore keeps everything in maps. It has no outbox: its messages carry
// an Undo, and the service answers 201 only once the broker took the event.
type MemoryStore struct {
	sqldb.InMemory // no outbox; Ping and Close do nothing

	mu        sync.Mutex
	locations map[string]Location
	events    map[string]Event
	order     []string // location IDs, oldest first
	evOrder   []string // event IDs, oldest first
}

// NewMemoryStore returns an empty in-memory store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{locations: map[string]Location{}, events: map[string]Event{}}
}

// AddLocation stores l.
func (s *MemoryStore) AddLocation(_ context.Context, l Location) (outbox.Message, error) {
	if err := locationCreated(l).Validate(); err != nil {
		return outbox.Message{}, fmt.Errorf("storing location: %w", err)
	}
	l.Halls = slices.Clone(l.Halls)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.locations[l.ID]; ok {
		return outbox.Message{}, fmt.Errorf("storing location %s: the ID is taken", l.ID)
	}
	s.locations[l.ID] = l
	s.order = append(s.order, l.ID)
	undo := func(context.Context) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.locations, l.ID)
		s.order = slices.DeleteFunc(s.order, func(id string) bool { return id == l.ID })
		return nil
	}
	return outbox.Message{Event: locationCreated(l), Undo: undo}, nil
}

// AddEvent stores e.
func (s *MemoryStore) AddEvent(_ context.Context, e Event) (outbox.Message, error) {
	if err := eventCreated(e).Validate(); err != nil {
		return outbox.Message{}, fmt.Errorf("storing event: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.locations[e.LocationID]; !ok {
		return outbox.Message{}, fmt.Errorf("storing event %s: location %s: %w", e.ID, e.LocationID, ErrNotFound)
	}
	if _, ok := s.events[e.ID]; ok {
		return outbox.Message{}, fmt.Errorf("storing event %s: the ID is taken", e.ID)
	}
	s.events[e.ID] = e
	s.evOrder = append(s.evOrder, e.ID)
	undo := func(context.Context) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.events, e.ID)
		s.evOrder = slices.DeleteFunc(s.evOrder, func(id string) bool { return id == e.ID })
		return nil
	}
	return outbox.Message{Event: eventCreated(e), Undo: undo}, nil
}

// Locations returns every location, oldest first.
func (s *MemoryStore) Locations(context.Context) ([]Location, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Location, 0, len(s.order))
	for _, id := range s.order {
		l := s.locations[id]
		l.Halls = slices.Clone(l.Halls)
		out = append(out, l)
	}
	return out, nil
}

// Location returns one location.
func (s *MemoryStore) Location(_ context.Context, id string) (Location, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.locations[id]
	if !ok {
		return Location{}, fmt.Errorf("location %s: %w", id, ErrNotFound)
	}
	l.Halls = slices.Clone(l.Halls)
	return l, nil
}

// Events returns every event, oldest first.
func (s *MemoryStore) Events(context.Context) ([]Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Event, 0, len(s.evOrder))
	for _, id := range s.evOrder {
		out = append(out, s.events[id])
	}
	return out, nil
}

// Event returns one event.
func (s *MemoryStore) Event(_ context.Context, id string) (Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.events[id]
	if !ok {
		return Event{}, fmt.Errorf("event %s: %w", id, ErrNotFound)
	}
	return e, nil
}

// EventByName returns the oldest event called name.
func (s *MemoryStore) EventByName(_ context.Context, name string) (Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range s.evOrder {
		if e := s.events[id]; e.Name == name {
			return e, nil
		}
	}
	return Event{}, fmt.Errorf("event named %q: %w", name, ErrNotFound)
}
