package bookingservice

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"example.com/myevents/capstone/internal/outbox"
	"example.com/myevents/capstone/internal/sqldb"
	"example.com/myevents/contracts"
)

// BookResult is the answer to one booking of a group: its event.booked, or
// why it was not sold (an error wrapping ErrNotFound, ErrSoldOut or
// contracts.ErrInvalid).
type BookResult struct {
	Msg outbox.Message
	Err error
}

// GroupBooker is a store that can sell many bookings in one transaction:
// the group commit of [Options.Group].
type GroupBooker interface {
	// BookMany sells the bookings bs in one transaction, each checked in
	// the order of bs against the seats the ones before it took, as Book
	// would one after the other. Result i answers bs[i]. In the same
	// transaction it marks the outbox messages sent sent (see
	// outbox.Publisher.TakeMarks). An error fails them all and stores
	// none of them.
	BookMany(ctx context.Context, bs []Booking, sent []int64) ([]BookResult, error)
}

// seatsLeft is an event's row as a group transaction sees it.
type seatsLeft struct {
	found, known     bool
	capacity, booked int
	added            int // seats this transaction takes
}

// BookMany sells the bookings bs in one transaction, with one commit (one
// fsync on SQLite) for all of them, and the outbox marks of sent, the
// event.booked emitted since the previous group, ride along.
//
// The rows of the events involved are read first, in the order of their
// IDs: on PostgreSQL with FOR UPDATE, which locks them until the commit, so
// that two instances never sell the same seats, and always in the same
// order, so that two transactions never wait for each other's locks (a
// deadlock). SQLite's transaction holds the one write lock from its start.
// Each booking is then decided in arrival order against the seats left,
// and each event's count moves by the seats sold, with the same
// conditional UPDATE Book uses, as a last guard.
func (s *SQLStore) BookMany(ctx context.Context, bs []Booking, sent []int64) ([]BookResult, error) {
	out := make([]BookResult, len(bs))
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		clear(out)
		if err := s.db.MarkSentInTx(ctx, tx, sent); err != nil {
			return err
		}
		left, err := s.lockEvents(ctx, tx, bs)
		if err != nil {
			return err
		}
		var sold []Booking
		var evs []contracts.Event
		var at []int // positions in bs of sold
		for i, b := range bs {
			if err := eventBooked(b).Validate(); err != nil {
				out[i].Err = fmt.Errorf("booking: %w", err)
				continue
			}
			e := left[b.ShowID]
			switch {
			case !e.found || !e.known:
				out[i].Err = fmt.Errorf("booking event %s: %w", b.ShowID, ErrNotFound)
			case b.Seats > e.capacity-e.booked:
				out[i].Err = fmt.Errorf("booking %d seats of event %s (%d of %d booked): %w",
					b.Seats, b.ShowID, e.booked, e.capacity, ErrSoldOut)
			default:
				e.booked += b.Seats
				e.added += b.Seats
				sold = append(sold, b)
				evs = append(evs, eventBooked(b))
				at = append(at, i)
			}
		}
		if len(sold) == 0 {
			return nil
		}
		if err := s.takeSeats(ctx, tx, left); err != nil {
			return err
		}
		if err := s.insertBookings(ctx, tx, sold); err != nil {
			return err
		}
		msgs, err := s.db.AddManyToOutbox(ctx, tx, evs)
		if err != nil {
			return err
		}
		for j, i := range at {
			out[i].Msg = msgs[j]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// lockEvents reads the rows of the events of bs, in ID order, locking them
// on PostgreSQL.
func (s *SQLStore) lockEvents(ctx context.Context, tx *sql.Tx, bs []Booking) (map[string]*seatsLeft, error) {
	left := make(map[string]*seatsLeft)
	var ids []string
	for _, b := range bs {
		if _, ok := left[b.ShowID]; !ok {
			left[b.ShowID] = &seatsLeft{}
			ids = append(ids, b.ShowID)
		}
	}
	slices.Sort(ids)
	q := `SELECT known, capacity, booked FROM booking_events WHERE id = $1`
	if s.db.Kind == sqldb.Postgres {
		q += ` FOR UPDATE`
	}
	for _, id := range ids {
		e := left[id]
		var known int
		err := tx.QueryRowContext(ctx, q, id).Scan(&known, &e.capacity, &e.booked)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			continue
		case err != nil:
			return nil, fmt.Errorf("reading event %s: %w", id, err)
		}
		e.found, e.known = true, known == 1
	}
	return left, nil
}

// takeSeats adds the seats sold to each event's count. The condition
// cannot fail under the lock; if it did, the whole group fails rather than
// sell a seat twice.
func (s *SQLStore) takeSeats(ctx context.Context, tx *sql.Tx, left map[string]*seatsLeft) error {
	for id, e := range left {
		if e.added == 0 {
			continue
		}
		res, err := tx.ExecContext(ctx,
			`UPDATE booking_events SET booked = booked + $2
			 WHERE id = $1 AND known = 1 AND $2 <= capacity - booked`,
			id, e.added)
		if err != nil {
			return fmt.Errorf("reserving %d seats of event %s: %w", e.added, id, err)
		}
		n, err := res.RowsAffected()
		if err == nil && n != 1 {
			err = errors.New("the count changed under the lock")
		}
		if err != nil {
			return fmt.Errorf("reserving %d seats of event %s: %w", e.added, id, err)
		}
	}
	return nil
}

// insertBookings stores bs with one statement.
func (s *SQLStore) insertBookings(ctx context.Context, tx *sql.Tx, bs []Booking) error {
	q, args := bookingRows(bs)
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("storing %d bookings: %w", len(bs), err)
	}
	return nil
}

// bookingRows is the statement that inserts bs, and its arguments.
func bookingRows(bs []Booking) (string, []any) {
	var q strings.Builder
	args := make([]any, 0, 5*len(bs))
	q.WriteString(`INSERT INTO bookings (id, event_id, user_id, seats, booked_at) VALUES `)
	for i, b := range bs {
		if i > 0 {
			q.WriteString(", ")
		}
		n := len(args)
		fmt.Fprintf(&q, "($%d, $%d, $%d, $%d, $%d)", n+1, n+2, n+3, n+4, n+5)
		args = append(args, b.ID, b.ShowID, b.UserID, b.Seats, sqldb.Micros(b.Date))
	}
	return q.String(), args
}

// BatchApplier is a store that can apply many bookings heard on the broker
// in one transaction: Service.HandleBatch.
type BatchApplier interface {
	// ApplyBookings applies bs as ApplyBooking would one after the other,
	// in one transaction: result i reports whether bs[i] was new (a
	// booking stored already, or earlier in bs, is skipped). An error
	// applies none of them. bs is the caller's again once it returned
	// (Service.HandleBatch reuses it): keep copies, never the slice.
	ApplyBookings(ctx context.Context, bs []Booking) ([]bool, error)
}

// ApplyBookings applies bs in one transaction, with one commit (one fsync
// on SQLite) for all of them: one statement inserts the bookings not
// stored yet (ON CONFLICT DO NOTHING, RETURNING the IDs it stored), then
// one upsert per show, in ID order (PostgreSQL locks the rows in the same
// order in every transaction, so two never wait for each other), adds the
// seats of the new ones.
func (s *SQLStore) ApplyBookings(ctx context.Context, bs []Booking) ([]bool, error) {
	for _, b := range bs {
		if err := eventBooked(b).Validate(); err != nil {
			return nil, fmt.Errorf("storing booking: %w", err)
		}
	}
	applied := make([]bool, len(bs))
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		clear(applied)
		stored, err := insertNewBookings(ctx, tx, bs)
		if err != nil {
			return err
		}
		seats := map[string]int{}
		var shows []string
		for i, b := range bs {
			if !stored[b.ID] {
				continue // stored before, or earlier in bs
			}
			delete(stored, b.ID)
			applied[i] = true
			if _, ok := seats[b.ShowID]; !ok {
				shows = append(shows, b.ShowID)
			}
			seats[b.ShowID] += b.Seats
		}
		slices.Sort(shows)
		for _, id := range shows {
			if err := countSeats(ctx, tx, id, seats[id]); err != nil {
				return fmt.Errorf("counting %d seats: %w", seats[id], err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return applied, nil
}

// insertNewBookings inserts the bookings of bs not stored yet and returns
// their IDs.
func insertNewBookings(ctx context.Context, tx *sql.Tx, bs []Booking) (map[string]bool, error) {
	q, args := bookingRows(bs)
	rows, err := tx.QueryContext(ctx, q+` ON CONFLICT (id) DO NOTHING RETURNING id`, args...)
	if err != nil {
		return nil, fmt.Errorf("storing %d bookings: %w", len(bs), err)
	}
	defer rows.Close()
	stored := make(map[string]bool, len(bs))
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("storing %d bookings: %w", len(bs), err)
		}
		stored[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storing %d bookings: %w", len(bs), err)
	}
	return stored, nil
}

var (
	_ GroupBooker  = (*SQLStore)(nil)
	_ BatchApplier = (*SQLStore)(nil)
)
