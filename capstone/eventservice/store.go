package eventservice

import (
	"context"
	"errors"
	"time"

	"example.com/myevents/capstone/internal/outbox"
	"example.com/myevents/capstone/internal/sqldb"
	"example.com/myevents/contracts"
)

// Hall is a room of a location.
type Hall struct {
	Name     string `json:"name"`
	Capacity int    `json:"capacity"`
}

// Location is a venue with its halls. Its JSON form is what the HTTP API
// accepts and returns.
type Location struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Address   string `json:"address"`
	Country   string `json:"country"`
	OpenTime  int    `json:"open_time"`
	CloseTime int    `json:"close_time"`
	Halls     []Hall `json:"halls"`
}

// hall returns the hall called name.
func (l Location) hall(name string) (Hall, bool) {
	for _, h := range l.Halls {
		if h.Name == name {
			return h, true
		}
	}
	return Hall{}, false
}

// Event is something that happens in a hall of a location, such as a
// concert. Capacity is copied from the hall when the event is created.
type Event struct {
	ID         string
	Name       string
	LocationID string
	Hall       string
	Capacity   int
	StartDate  time.Time
	EndDate    time.Time
	Duration   int
}

// ErrNotFound is returned for an ID or name the store does not have.
var ErrNotFound = errors.New("not found")

// A value outside the limits of package contracts is refused by every store
// with an error wrapping contracts.ErrInvalid: the event announcing it
// could not be emitted.

// Store keeps EventService's locations and events. The Add methods store the
// row together with the event that announces it, as one step: a SQL store
// writes the row and an outbox row in one transaction; the memory store
// returns a message whose Undo removes the row again.
type Store interface {
	// AddLocation stores l, which has its ID, and prepares location.created.
	AddLocation(ctx context.Context, l Location) (outbox.Message, error)
	// AddEvent stores e, which has its ID and its hall's capacity, and
	// prepares event.created. Its location must exist.
	AddEvent(ctx context.Context, e Event) (outbox.Message, error)
	// Locations returns every location, oldest first.
	Locations(ctx context.Context) ([]Location, error)
	// Location returns one location, or ErrNotFound.
	Location(ctx context.Context, id string) (Location, error)
	// Events returns every event, oldest first.
	Events(ctx context.Context) ([]Event, error)
	// Event returns one event, or ErrNotFound.
	Event(ctx context.Context, id string) (Event, error)
	// EventByName returns the oldest event called name, or ErrNotFound.
	EventByName(ctx context.Context, name string) (Event, error)
	// Outbox returns the store's outbox, or nil if it keeps none.
	Outbox() outbox.Store
	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}

// OpenStore opens the store dsn selects (see package sqldb): "" for the
// SQLite file eventservice.db in the working directory, "sqlite:PATH",
// "postgres://..." or "memory:". It creates the schema if needed.
func OpenStore(ctx context.Context, dsn string) (Store, error) {
	return sqldb.OpenStore(ctx, dsn, "eventservice", "the EventService store",
		func() Store { return NewMemoryStore() },
		func(ctx context.Context, db *sqldb.DB) (Store, error) { return NewSQLStore(ctx, db) })
}

// locationCreated is the event that announces l.
func locationCreated(l Location) *contracts.LocationCreated {
	halls := make([]contracts.Hall, len(l.Halls))
	for i, h := range l.Halls {
		halls[i] = contracts.Hall{Name: h.Name, Capacity: h.Capacity}
	}
	return &contracts.LocationCreated{
		ID: l.ID, Name: l.Name, Address: l.Address, Country: l.Country,
		OpenTime: l.OpenTime, CloseTime: l.CloseTime, Halls: halls,
	}
}

// eventCreated is the event that announces e.
func eventCreated(e Event) *contracts.EventCreated {
	return &contracts.EventCreated{
		ID: e.ID, Name: e.Name, LocationID: e.LocationID, Hall: e.Hall,
		Capacity: e.Capacity, StartDate: e.StartDate, EndDate: e.EndDate,
	}
}
