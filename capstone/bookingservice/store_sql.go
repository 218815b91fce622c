package bookingservice

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"example.com/myevents/capstone/internal/outbox"
	"example.com/myevents/capstone/internal/sqldb"
	"example.com/myevents/contracts"
)

// schema is BookingService's tables, in SQL that SQLite and PostgreSQL both
// accept. Every number is a BIGINT (64-bit in both), times in microseconds
// since 1970. A booking_events row
// with known = 0 is a placeholder: it counts the seats of bookings heard
// before the event itself.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS booking_locations (
		id TEXT PRIMARY KEY,
		name TEXT NOT NULL,
		address TEXT NOT NULL,
		country TEXT NOT NULL,
		open_time BIGINT NOT NULL,
		close_time BIGINT NOT NULL,
		halls TEXT NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS booking_events (
		id TEXT PRIMARY KEY,
		known BIGINT NOT NULL,
		name TEXT NOT NULL,
		location_id TEXT NOT NULL,
		hall TEXT NOT NULL,
		capacity BIGINT NOT NULL,
		booked BIGINT NOT NULL,
		start_date BIGINT NOT NULL,
		end_date BIGINT NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS bookings (
		id TEXT PRIMARY KEY,
		event_id TEXT NOT NULL,
		user_id TEXT NOT NULL,
		seats BIGINT NOT NULL,
		booked_at BIGINT NOT NULL
	)`,
	`CREATE INDEX IF NOT EXISTS bookings_by_event ON bookings (event_id, booked_at)`,
}

// SQLStore keeps BookingService's state in SQLite or PostgreSQL, with an
// outbox beside it.
type SQLStore struct {
	sqldb.Store // Outbox, Ping, Close
	db          *sqldb.DB
}

// NewSQLStore creates the schema in db if needed and returns the store. The
// store closes db when it is closed.
func NewSQLStore(ctx context.Context, db *sqldb.DB) (*SQLStore, error) {
	common, err := sqldb.NewStore(ctx, db, "the BookingService store", schema...)
	if err != nil {
		return nil, err
	}
	return &SQLStore{Store: common, db: db}, nil
}

// SaveLocation stores l unless it exists.
func (s *SQLStore) SaveLocation(ctx context.Context, l Location) error {
	if err := locationCreated(l).Validate(); err != nil {
		return fmt.Errorf("storing location: %w", err)
	}
	halls, err := json.Marshal(l.Halls)
	if err != nil {
		return fmt.Errorf("encoding the halls of location %s: %w", l.ID, err)
	}
	_, err = s.db.ExecContext(ctx,
		`INSERT INTO booking_locations (id, name, address, country, open_time, close_time, halls)
		 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`,
		l.ID, l.Name, l.Address, l.Country, l.OpenTime, l.CloseTime, string(halls))
	if err != nil {
		return fmt.Errorf("storing location %s: %w", l.ID, err)
	}
	return nil
}

// SaveShow stores e unless it exists. A placeholder is filled in and keeps
// its count of booked seats.
func (s *SQLStore) SaveShow(ctx context.Context, e Show) error {
	if err := eventCreated(e).Validate(); err != nil {
		return fmt.Errorf("storing event: %w", err)
	}
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO booking_events (id, known, name, location_id, hall, capacity, booked, start_date, end_date)
		 VALUES ($1, 1, $2, $3, $4, $5, 0, $6, $7)
		 ON CONFLICT (id) DO UPDATE SET known = 1, name = excluded.name, location_id = excluded.location_id,
		   hall = excluded.hall, capacity = excluded.capacity, start_date = excluded.start_date, end_date = excluded.end_date
		 WHERE booking_events.known = 0`,
		e.ID, e.Name, e.LocationID, e.Hall, e.Capacity, sqldb.Micros(e.StartDate), sqldb.Micros(e.EndDate))
	if err != nil {
		return fmt.Errorf("storing event %s: %w", e.ID, err)
	}
	return nil
}

// ApplyBooking stores b unless it exists and adds its seats to its show (or
// to a placeholder), in one transaction. A count that would pass the
// largest BIGINT is refused (SQLite would turn it into a float for good).
func (s *SQLStore) ApplyBooking(ctx context.Context, b Booking) (bool, error) {
	if err := eventBooked(b).Validate(); err != nil {
		return false, fmt.Errorf("storing booking: %w", err)
	}
	applied := false
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		applied, err = s.applyInTx(ctx, tx, b)
		return err
	})
	return applied, err
}

// applyInTx stores b in tx unless it exists and adds its seats to its show
// (or to a placeholder). It reports whether b was new.
func (s *SQLStore) applyInTx(ctx context.Context, tx *sql.Tx, b Booking) (bool, error) {
	res, err := tx.ExecContext(ctx,
		`INSERT INTO bookings (id, event_id, user_id, seats, booked_at) VALUES ($1, $2, $3, $4, $5)
		 ON CONFLICT (id) DO NOTHING`,
		b.ID, b.ShowID, b.UserID, b.Seats, sqldb.Micros(b.Date))
	if err != nil {
		return false, fmt.Errorf("storing booking %s: %w", b.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("storing booking %s: %w", b.ID, err)
	}
	if n == 0 {
		return false, nil // stored already: a redelivery or a replay
	}
	if err := countSeats(ctx, tx, b.ShowID, b.Seats); err != nil {
		return false, fmt.Errorf("counting booking %s: %w", b.ID, err)
	}
	return true, nil
}

// countSeats adds seats bookings applied in tx to show showID's count.
// Upsert, not UPDATE: if event.created has not arrived yet, the
// placeholder keeps the count. The bookings' insert and this statement
// lock the same row, so this cannot lose seats to a concurrent SaveShow.
func countSeats(ctx context.Context, tx *sql.Tx, showID string, seats int) error {
	res, err := tx.ExecContext(ctx,
		`INSERT INTO booking_events (id, known, name, location_id, hall, capacity, booked, start_date, end_date)
		 VALUES ($1, 0, '', '', '', 0, $2, 0, 0)
		 ON CONFLICT (id) DO UPDATE SET booked = booking_events.booked + excluded.booked
		 WHERE booking_events.booked <= 9223372036854775807 - excluded.booked`,
		showID, seats)
	var n int64
	if err == nil {
		n, err = res.RowsAffected()
	}
	if err != nil {
		return fmt.Errorf("on event %s: %w", showID, err)
	}
	if n == 0 {
		return fmt.Errorf("on event %s: %w: the count would overflow", showID, contracts.ErrInvalid)
	}
	return nil
}

// Book sells b.Seats seats if they are left, stores the booking and
// event.booked, all in one transaction.
//
// The capacity check and the reservation are one conditional UPDATE of the
// event's row. PostgreSQL locks the row for the UPDATE; a concurrent
// transaction waits and then re-checks the condition against the committed
// count, so two requests (or two instances) can never both take the last
// seat. SQLite allows one writer at a time, which gives the same guarantee.
func (s *SQLStore) Book(ctx context.Context, b Booking) (outbox.Message, error) {
	if err := eventBooked(b).Validate(); err != nil {
		return outbox.Message{}, fmt.Errorf("booking: %w", err)
	}
	var msg outbox.Message
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		// capacity - booked cannot overflow, booked + seats could.
		res, err := tx.ExecContext(ctx,
			`UPDATE booking_events SET booked = booked + $2
			 WHERE id = $1 AND known = 1 AND $2 <= capacity - booked`,
			b.ShowID, b.Seats)
		if err != nil {
			return fmt.Errorf("reserving %d seats of event %s: %w", b.Seats, b.ShowID, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("reserving %d seats of event %s: %w", b.Seats, b.ShowID, err)
		}
		if n == 0 {
			return s.whyNot(ctx, tx, b)
		}
		_, err = tx.ExecContext(ctx,
			`INSERT INTO bookings (id, event_id, user_id, seats, booked_at) VALUES ($1, $2, $3, $4, $5)`,
			b.ID, b.ShowID, b.UserID, b.Seats, sqldb.Micros(b.Date))
		if err != nil {
			return fmt.Errorf("storing booking %s: %w", b.ID, err)
		}
		msg, err = s.db.AddToOutbox(ctx, tx, eventBooked(b))
		return err
	})
	return msg, err
}

// whyNot explains a reservation that changed no row: the event is unknown
// or sold out.
func (s *SQLStore) whyNot(ctx context.Context, tx *sql.Tx, b Booking) error {
	var known, booked, capacity int
	err := tx.QueryRowContext(ctx, `SELECT known, booked, capacity FROM booking_events WHERE id = $1`, b.ShowID).
		Scan(&known, &booked, &capacity)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && known == 0) {
		return fmt.Errorf("booking event %s: %w", b.ShowID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("reading event %s: %w", b.ShowID, err)
	}
	return fmt.Errorf("booking %d seats of event %s (%d of %d booked): %w", b.Seats, b.ShowID, booked, capacity, ErrSoldOut)
}

// Location returns one location.
func (s *SQLStore) Location(ctx context.Context, id string) (Location, error) {
	var (
		l     Location
		halls string
	)
	err := s.db.QueryRowContext(ctx,
		`SELECT id, name, address, country, open_time, close_time, halls FROM booking_locations WHERE id = $1`, id).
		Scan(&l.ID, &l.Name, &l.Address, &l.Country, &l.OpenTime, &l.CloseTime, &halls)
	if errors.Is(err, sql.ErrNoRows) {
		return Location{}, fmt.Errorf("location %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Location{}, fmt.Errorf("reading location %s: %w", id, err)
	}
	if err := json.Unmarshal([]byte(halls), &l.Halls); err != nil {
		return Location{}, fmt.Errorf("decoding the halls of location %s: %w", id, err)
	}
	return l, nil
}

// Show returns one show.
func (s *SQLStore) Show(ctx context.Context, id string) (Show, error) {
	var (
		e          Show
		start, end int64
	)
	err := s.db.QueryRowContext(ctx,
		`SELECT id, name, location_id, hall, capacity, booked, start_date, end_date
		 FROM booking_events WHERE id = $1 AND known = 1`, id).
		Scan(&e.ID, &e.Name, &e.LocationID, &e.Hall, &e.Capacity, &e.Booked, &start, &end)
	if errors.Is(err, sql.ErrNoRows) {
		return Show{}, fmt.Errorf("event %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Show{}, fmt.Errorf("reading event %s: %w", id, err)
	}
	e.StartDate, e.EndDate = sqldb.Time(start), sqldb.Time(end)
	return e, nil
}

// Bookings returns the bookings of a show, oldest first. The show check
// and the list are one query, so they agree.
func (s *SQLStore) Bookings(ctx context.Context, showID string) ([]Booking, error) {
	found := false
	out := []Booking{}
	err := s.db.EachRow(ctx, "reading the bookings of event "+showID,
		`SELECT b.id, b.user_id, b.seats, b.booked_at
		 FROM booking_events e LEFT JOIN bookings b ON b.event_id = e.id
		 WHERE e.id = $1 AND e.known = 1 ORDER BY b.booked_at, b.id`, []any{showID}, func(rows *sql.Rows) error {
			found = true
			var (
				id, user sql.NullString
				seats    sql.NullInt64
				at       sql.NullInt64
			)
			if err := rows.Scan(&id, &user, &seats, &at); err != nil {
				return err
			}
			if id.Valid {
				out = append(out, Booking{ID: id.String, ShowID: showID, UserID: user.String, Seats: int(seats.Int64), Date: sqldb.Time(at.Int64)})
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("event %s: %w", showID, ErrNotFound)
	}
	// The same microsecond: by ID, byte by byte, as the memory store lists
	// them. ORDER BY b.id would follow the database's collation, which on
	// PostgreSQL created with a language's locale puts "a" before "B".
	slices.SortStableFunc(out, byDateThenID)
	return out, nil
}

// Compile-time checks that both stores implement Store.
var (
	_ Store = (*SQLStore)(nil)
	_ Store = (*MemoryStore)(nil)
)
