package bookingservice

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"example.com/myevents/capstone/internal/outbox"
	"example.com/myevents/capstone/internal/sqldb"
)

// MemoryStore keeps locations and shows in maps and bookings in a
// bookingTable, behind one mutex, which makes Book's check-and-reserve
// atomic. It has no outbox: with a Kafka broker the
// `events` log is the durable record and the service rebuilds the store from
// it at start-up, so Book's message carries an Undo and the service answers
// 201 only once the broker took the event.
type MemoryStore struct {
	sqldb.InMemory // no outbox; Ping and Close do nothing

	mu        sync.Mutex
	locations map[string]Location
	events    map[string]*memShow
	bookings  *bookingTable // every stored booking, by ID (store_memory_table.go)
}

// memShow is a show, or a placeholder counting the seats of bookings
// heard before the show itself (known == false), with its bookings: their
// indexes in the store's bookingTable, in the order they were stored.
type memShow struct {
	Show
	known    bool
	bookings []uint32
}

// removeBooking takes booking i out of the show's bookings, looked for from
// the newest (the one taken back is usually the last stored).
func (e *memShow) removeBooking(i int) {
	for k := len(e.bookings) - 1; k >= 0; k-- {
		if int(e.bookings[k]) == i {
			e.bookings = slices.Delete(e.bookings, k, k+1)
			return
		}
	}
}

// NewMemoryStore returns an empty in-memory store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{
		locations: map[string]Location{},
		events:    map[string]*memShow{},
		bookings:  newBookingTable(),
	}
}

// SaveLocation stores l unless it exists.
func (s *MemoryStore) SaveLocation(_ context.Context, l Location) error {
	if err := locationCreated(l).Validate(); err != nil {
		return fmt.Errorf("storing location: %w", err)
	}
	l.Halls = slices.Clone(l.Halls)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.locations[l.ID]; !ok {
		s.locations[l.ID] = l
	}
	return nil
}

// SaveShow stores e unless it exists, keeping a placeholder's count.
func (s *MemoryStore) SaveShow(_ context.Context, e Show) error {
	if err := eventCreated(e).Validate(); err != nil {
		return fmt.Errorf("storing event: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.events[e.ID]
	if ok && old.known {
		return nil
	}
	if ok { // a placeholder: the show takes its count and its bookings
		e.Booked = old.Booked
		old.Show, old.known = e, true
		return nil
	}
	e.Booked = 0
	s.events[e.ID] = &memShow{Show: e, known: true}
	return nil
}

// ApplyBooking stores b unless it exists and counts its seats (applyOnce,
// in solution.go: the capstone's exercise).
func (s *MemoryStore) ApplyBooking(_ context.Context, b Booking) (bool, error) {
	if err := eventBooked(b).Validate(); err != nil {
		return false, fmt.Errorf("storing booking: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applyOnce(b)
}

// ApplyBookings applies bs as ApplyBooking would one after the other,
// under one lock (BatchApplier): a replay applies a window of a
// partition's records at once. If one is refused, those before it are
// taken back and none is applied.
func (s *MemoryStore) ApplyBookings(_ context.Context, bs []Booking) ([]bool, error) {
	for _, b := range bs {
		if err := eventBooked(b).Validate(); err != nil {
			return nil, fmt.Errorf("storing booking: %w", err)
		}
	}
	applied := make([]bool, len(bs))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, b := range bs {
		ok, err := s.applyOnce(b)
		if err != nil {
			for j := i - 1; j >= 0; j-- {
				if applied[j] {
					s.remove(bs[j])
				}
			}
			return nil, err
		}
		applied[i] = ok
	}
	return applied, nil
}

// Book sells b.Seats seats if they are left.
func (s *MemoryStore) Book(_ context.Context, b Booking) (outbox.Message, error) {
	if err := eventBooked(b).Validate(); err != nil {
		return outbox.Message{}, fmt.Errorf("booking: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ev, ok := s.events[b.ShowID]
	if !ok || !ev.known {
		return outbox.Message{}, fmt.Errorf("booking event %s: %w", b.ShowID, ErrNotFound)
	}
	// Capacity - Booked cannot overflow (both are >= 0); Booked + Seats
	// could, and did sell seats of a full event.
	if b.Seats > ev.Capacity-ev.Booked {
		return outbox.Message{}, fmt.Errorf("booking %d seats of event %s (%d of %d booked): %w",
			b.Seats, b.ShowID, ev.Booked, ev.Capacity, ErrSoldOut)
	}
	if s.bookings.has(b.ID) {
		return outbox.Message{}, fmt.Errorf("storing booking %s: the ID is taken", b.ID)
	}
	s.add(b)
	// Undo gives the seats back if the broker refuses event.booked. Until
	// then they are held: a concurrent request for them gets 409.
	undo := func(context.Context) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.remove(b)
		return nil
	}
	return outbox.Message{Event: eventBooked(b), Undo: undo}, nil
}

// add stores b and counts its seats, on a placeholder if its show is not
// known yet; its date to the microsecond, as the SQL stores keep it, so
// that every store lists the same bookings in the same order. The caller
// holds s.mu.
func (s *MemoryStore) add(b Booking) {
	b.Date = b.Date.Truncate(time.Microsecond)
	ev, ok := s.events[b.ShowID]
	if !ok {
		ev = &memShow{Show: Show{ID: b.ShowID}}
		s.events[b.ShowID] = ev
	}
	ev.bookings = append(ev.bookings, uint32(s.bookings.add(b)))
	ev.Booked += b.Seats
}

// remove takes back a booking that add stored, if it is stored: the
// booking, its place among its show's bookings and its seats. The caller
// holds s.mu.
func (s *MemoryStore) remove(b Booking) {
	i, ok := s.bookings.remove(b.ID)
	if !ok {
		return
	}
	ev := s.events[b.ShowID]
	ev.removeBooking(i)
	ev.Booked -= b.Seats
	if s.bookings.wasteful() {
		moved := s.bookings.compact()
		for _, e := range s.events {
			for k, i := range e.bookings {
				e.bookings[k] = moved[i]
			}
		}
	}
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

// Show returns one show.
func (s *MemoryStore) Show(_ context.Context, id string) (Show, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev, ok := s.events[id]
	if !ok || !ev.known {
		return Show{}, fmt.Errorf("event %s: %w", id, ErrNotFound)
	}
	return ev.Show, nil
}

// Bookings returns the bookings of a show, oldest first.
func (s *MemoryStore) Bookings(_ context.Context, showID string) ([]Booking, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev, ok := s.events[showID]
	if !ok || !ev.known {
		return nil, fmt.Errorf("event %s: %w", showID, ErrNotFound)
	}
	out := make([]Booking, len(ev.bookings)) // a show without bookings has an empty list, not nil
	for k, i := range ev.bookings {
		out[k] = s.bookings.booking(int(i))
	}
	slices.SortFunc(out, byDateThenID)
	return out, nil
}
