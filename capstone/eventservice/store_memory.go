package eventservice

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"example.com/myevents/capstone/internal/outbox"
	"example.com/myevents/capstone/internal/sqldb"
	"example.com/myevents/contracts"
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
	return add(s, "location", s.locations, &s.order, l.ID, l, locationCreated(l))
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
	return add(s, "event", s.events, &s.evOrder, e.ID, e, eventCreated(e))
}

// add stores v under id in m, last in order, unless the ID is taken; the
// message announces it with ev, and its Undo removes it again. The caller
// holds s.mu.
func add[T any](s *MemoryStore, what string, m map[string]T, order *[]string, id string, v T, ev contracts.Event) (outbox.Message, error) {
	if _, ok := m[id]; ok {
		return outbox.Message{}, fmt.Errorf("storing %s %s: the ID is taken", what, id)
	}
	m[id] = v
	*order = append(*order, id)
	undo := func(context.Context) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(m, id)
		*order = slices.DeleteFunc(*order, func(o string) bool { return o == id })
		return nil
	}
	return outbox.Message{Event: ev, Undo: undo}, nil
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
	l, err := lookup(s.locations, id, "location")
	l.Halls = slices.Clone(l.Halls)
	return l, err
}

// lookup returns m[id], or ErrNotFound naming what and id.
func lookup[T any](m map[string]T, id, what string) (T, error) {
	v, ok := m[id]
	if !ok {
		return v, fmt.Errorf("%s %s: %w", what, id, ErrNotFound)
	}
	return v, nil
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
	return lookup(s.events, id, "event")
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
