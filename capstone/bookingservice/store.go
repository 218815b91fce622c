package bookingservice

import (
	"cmp"
	"context"
	"errors"
	"time"

	"example.com/myevents/capstone/internal/outbox"
	"example.com/myevents/capstone/internal/sqldb"
	"example.com/myevents/contracts"
)

// Location is BookingService's copy of a location, from location.created.
type Location struct {
	ID        string
	Name      string
	Address   string
	Country   string
	OpenTime  int
	CloseTime int
	Halls     []contracts.Hall
}

// Show is BookingService's copy of an event in the sense of a concert (a
// show), from event.created, with the number of seats booked so far. The
// word "event" is kept for messages (contracts.Event); the wire and the
// database still say event (event_id, booking_events, /events/{id}).

type Show struct {
	ID         string
	Name       string
	LocationID string
	Hall       string
	Capacity   int
	Booked     int
	StartDate  time.Time
	EndDate    time.Time
}

// Booking is a number of seats of one show, booked by one user.
type Booking struct {
	ID     string
	ShowID string
	UserID string
	Seats  int
	Date   time.Time
}

// byDateThenID is the order every store lists a show's bookings in:
// oldest first, and bookings of the same microsecond by ID, byte by byte.
func byDateThenID(a, b Booking) int {
	return cmp.Or(a.Date.Compare(b.Date), cmp.Compare(a.ID, b.ID))
}

// Errors the store returns. A value outside the limits of package
// contracts (seats, capacity, clean IDs) is refused with an error wrapping
// contracts.ErrInvalid, by every store, whoever calls it.
var (
	// ErrNotFound: no such show (or location) in BookingService's copy.
	ErrNotFound = errors.New("not found")
	// ErrSoldOut: the show has fewer seats left than asked for.
	ErrSoldOut = errors.New("not enough seats left")
)

// Store keeps BookingService's copy of locations and shows and its
// bookings.
//
// Save* and ApplyBooking apply what the service hears on the broker. They
// are idempotent: applying the same event twice changes nothing, so a
// redelivery or a replay of the log is harmless.
//
// An event.booked can arrive before the event.created of its event (it was
// sold by another instance, or retried out of order). Its booking is kept
// and its seats are counted on a placeholder for the show; the show is
// unknown (ErrNotFound) until its event.created arrives, which fills in the
// placeholder and keeps the count.
type Store interface {
	// SaveLocation stores l unless a location with its ID exists.
	SaveLocation(ctx context.Context, l Location) error
	// SaveShow stores e unless a show with its ID exists; e.Booked is
	// ignored (the store counts bookings itself).
	SaveShow(ctx context.Context, e Show) error
	// ApplyBooking stores a booking made elsewhere (or earlier) and adds its
	// seats to its show, without checking capacity: the seats are sold
	// already. It reports false, and changes nothing, if the booking is
	// stored already.
	ApplyBooking(ctx context.Context, b Booking) (bool, error)
	// Book sells b.Seats seats of show b.ShowID atomically, together with
	// the event.booked that announces it: ErrNotFound if the event is
	// unknown, ErrSoldOut if fewer seats are left. Concurrent calls, also
	// from other instances sharing the database, never sell more than the
	// capacity.
	Book(ctx context.Context, b Booking) (outbox.Message, error)
	// Location returns one location, or ErrNotFound.
	Location(ctx context.Context, id string) (Location, error)
	// Show returns one show, or ErrNotFound.
	Show(ctx context.Context, id string) (Show, error)
	// Bookings returns the bookings of a show, oldest first, or
	// ErrNotFound if the show is unknown.
	Bookings(ctx context.Context, showID string) ([]Booking, error)
	// Outbox returns the store's outbox, or nil if it keeps none.
	Outbox() outbox.Store
	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}

// OpenStore opens the store dsn selects (see package sqldb): "" for the
// SQLite file bookingservice.db in the working directory, "sqlite:PATH",
// "postgres://..." or "memory:". It creates the schema if needed.
func OpenStore(ctx context.Context, dsn string) (Store, error) {
	return sqldb.OpenStore(ctx, dsn, "bookingservice", "the BookingService store",
		func() Store { return NewMemoryStore() },
		func(ctx context.Context, db *sqldb.DB) (Store, error) { return NewSQLStore(ctx, db) })
}

// eventBooked is the event that announces b. Its Validate is the check
// every store makes before it stores b: the limits are the contract's.
func eventBooked(b Booking) *contracts.EventBooked {
	return &contracts.EventBooked{ID: b.ID, EventID: b.ShowID, UserID: b.UserID, Seats: b.Seats, Date: b.Date}
}

// eventCreated is the event.created that e was stored from, for its
// Validate.
func eventCreated(e Show) *contracts.EventCreated {
	return &contracts.EventCreated{ID: e.ID, Name: e.Name, LocationID: e.LocationID, Hall: e.Hall,
		Capacity: e.Capacity, StartDate: e.StartDate, EndDate: e.EndDate}
}

// locationCreated is the location.created that l was stored from, for its
// Validate.
func locationCreated(l Location) *contracts.LocationCreated {
	return &contracts.LocationCreated{ID: l.ID, Name: l.Name, Address: l.Address, Country: l.Country,
		OpenTime: l.OpenTime, CloseTime: l.CloseTime, Halls: l.Halls}
}
