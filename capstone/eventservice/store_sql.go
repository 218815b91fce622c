package eventservice

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"example.com/myevents/capstone/internal/outbox"
	"example.com/myevents/capstone/internal/sqldb"
)

// schema is EventService's tables, in SQL that SQLite and PostgreSQL both
// accept. Times are BIGINT microseconds since 1970; seq keeps the order in
// which rows were added.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS locations (
		seq ` + sqldb.Serial + `,
		id TEXT NOT NULL UNIQUE,
		name TEXT NOT NULL,
		address TEXT NOT NULL,
		country TEXT NOT NULL,
		open_time BIGINT NOT NULL,
		close_time BIGINT NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS location_halls (
		location_id TEXT NOT NULL REFERENCES locations (id),
		position BIGINT NOT NULL,
		name TEXT NOT NULL,
		capacity BIGINT NOT NULL,
		PRIMARY KEY (location_id, name)
	)`,
	`CREATE TABLE IF NOT EXISTS events (
		seq ` + sqldb.Serial + `,
		id TEXT NOT NULL UNIQUE,
		name TEXT NOT NULL,
		location_id TEXT NOT NULL REFERENCES locations (id),
		hall TEXT NOT NULL,
		capacity BIGINT NOT NULL,
		start_date BIGINT NOT NULL,
		end_date BIGINT NOT NULL,
		duration BIGINT NOT NULL
	)`,
	`CREATE INDEX IF NOT EXISTS events_by_name ON events (name, seq)`,
}

// SQLStore keeps EventService's state in SQLite or PostgreSQL, with an
// outbox beside it.
type SQLStore struct {
	sqldb.Store // Outbox, Ping, Close
	db          *sqldb.DB
}

// NewSQLStore creates the schema in db if needed and returns the store. The
// store closes db when it is closed.
func NewSQLStore(ctx context.Context, db *sqldb.DB) (*SQLStore, error) {
	common, err := sqldb.NewStore(ctx, db, "the EventService store", schema...)
	if err != nil {
		return nil, err
	}
	return &SQLStore{Store: common, db: db}, nil
}

// AddLocation stores l, its halls and location.created in one transaction.
func (s *SQLStore) AddLocation(ctx context.Context, l Location) (outbox.Message, error) {
	return s.db.WriteAnnounced(ctx, "storing location", locationCreated(l), func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`INSERT INTO locations (id, name, address, country, open_time, close_time)
			 VALUES ($1, $2, $3, $4, $5, $6)`,
			l.ID, l.Name, l.Address, l.Country, l.OpenTime, l.CloseTime)
		if err != nil {
			return fmt.Errorf("storing location %s: %w", l.ID, err)
		}
		for i, h := range l.Halls {
			_, err := tx.ExecContext(ctx,
				`INSERT INTO location_halls (location_id, position, name, capacity) VALUES ($1, $2, $3, $4)`,
				l.ID, i, h.Name, h.Capacity)
			if err != nil {
				return fmt.Errorf("storing hall %q of location %s: %w", h.Name, l.ID, err)
			}
		}
		return nil
	})
}

// AddEvent stores e and event.created in one transaction.
func (s *SQLStore) AddEvent(ctx context.Context, e Event) (outbox.Message, error) {
	return s.db.WriteAnnounced(ctx, "storing event", eventCreated(e), func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM locations WHERE id = $1`, e.LocationID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("storing event %s: location %s: %w", e.ID, e.LocationID, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("storing event %s: looking up location %s: %w", e.ID, e.LocationID, err)
		}
		_, err = tx.ExecContext(ctx,
			`INSERT INTO events (id, name, location_id, hall, capacity, start_date, end_date, duration)
			 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			e.ID, e.Name, e.LocationID, e.Hall, e.Capacity,
			sqldb.Micros(e.StartDate), sqldb.Micros(e.EndDate), e.Duration)
		if err != nil {
			return fmt.Errorf("storing event %s: %w", e.ID, err)
		}
		return nil
	})
}

// Locations returns every location, oldest first.
func (s *SQLStore) Locations(ctx context.Context) ([]Location, error) {
	return s.locations(ctx, ``)
}

// Location returns one location.
func (s *SQLStore) Location(ctx context.Context, id string) (Location, error) {
	ls, err := s.locations(ctx, `WHERE l.id = $1`, id)
	return first(ls, err, "location "+id)
}

// first returns the first of items read without err, or ErrNotFound
// naming what if there is none.
func first[T any](items []T, err error, what string) (T, error) {
	var none T
	if err != nil {
		return none, err
	}
	if len(items) == 0 {
		return none, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return items[0], nil
}

// locations reads the locations that where selects, with their halls, in
// one query: one row per hall (or one row without a hall).
func (s *SQLStore) locations(ctx context.Context, where string, args ...any) ([]Location, error) {
	out := []Location{}
	err := s.db.EachRow(ctx, "reading locations",
		`SELECT l.id, l.name, l.address, l.country, l.open_time, l.close_time, h.name, h.capacity
		 FROM locations l LEFT JOIN location_halls h ON h.location_id = l.id `+where+`
		 ORDER BY l.seq, h.position`, args, func(rows *sql.Rows) error {
			var (
				l        Location
				hallName sql.NullString
				capacity sql.NullInt64
			)
			if err := rows.Scan(&l.ID, &l.Name, &l.Address, &l.Country, &l.OpenTime, &l.CloseTime, &hallName, &capacity); err != nil {
				return err
			}
			if n := len(out); n == 0 || out[n-1].ID != l.ID {
				l.Halls = []Hall{}
				out = append(out, l)
			}
			if hallName.Valid {
				last := &out[len(out)-1]
				last.Halls = append(last.Halls, Hall{Name: hallName.String, Capacity: int(capacity.Int64)})
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Events returns every event, oldest first.
func (s *SQLStore) Events(ctx context.Context) ([]Event, error) {
	return s.events(ctx, ``)
}

// Event returns one event.
func (s *SQLStore) Event(ctx context.Context, id string) (Event, error) {
	es, err := s.events(ctx, `WHERE id = $1`, id)
	return first(es, err, "event "+id)
}

// EventByName returns the oldest event called name.
func (s *SQLStore) EventByName(ctx context.Context, name string) (Event, error) {
	es, err := s.events(ctx, `WHERE name = $1`, name)
	return first(es, err, fmt.Sprintf("event named %q", name))
}

// events reads the events that where selects, oldest first.
func (s *SQLStore) events(ctx context.Context, where string, args ...any) ([]Event, error) {
	out := []Event{}
	err := s.db.EachRow(ctx, "reading events",
		`SELECT id, name, location_id, hall, capacity, start_date, end_date, duration
		 FROM events `+where+` ORDER BY seq`, args, func(rows *sql.Rows) error {
			var (
				e          Event
				start, end int64
			)
			if err := rows.Scan(&e.ID, &e.Name, &e.LocationID, &e.Hall, &e.Capacity, &start, &end, &e.Duration); err != nil {
				return err
			}
			e.StartDate, e.EndDate = sqldb.Time(start), sqldb.Time(end)
			out = append(out, e)
			return nil
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}
