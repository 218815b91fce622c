package sqldb

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"example.com/myevents/capstone/internal/outbox"
	"example.com/myevents/contracts"
)

// AddManyToOutbox stores evs in the outbox inside tx with one statement,
// for a group commit: the messages come back in the order of evs. Each row
// is first due after [outbox.Grace], as with AddToOutbox.
func (db *DB) AddManyToOutbox(ctx context.Context, tx *sql.Tx, evs []contracts.Event) ([]outbox.Message, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	now := time.Now()
	created, due := Micros(now), Micros(now.Add(outbox.Grace))
	var (
		q     strings.Builder
		args  = make([]any, 0, 4*len(evs))
		index = make(map[string]int, len(evs)) // payload -> position in evs
	)
	q.WriteString(`INSERT INTO ` + db.outbox + ` (event_name, payload, created_at, next_attempt_at) VALUES `)
	for i, ev := range evs {
		payload, err := json.Marshal(ev)
		if err != nil {
			return nil, fmt.Errorf("encoding %s for the outbox: %w", ev.EventName(), err)
		}
		index[string(payload)] = i
		if i > 0 {
			q.WriteString(", ")
		}
		n := len(args)
		fmt.Fprintf(&q, "($%d, $%d, $%d, $%d)", n+1, n+2, n+3, n+4)
		args = append(args, ev.EventName(), string(payload), created, due)
	}
	// Neither SQLite nor PostgreSQL promises RETURNING in VALUES order, so
	// each ID is matched to its event by the payload (every event carries
	// its own ID, so no two payloads are equal).
	q.WriteString(" RETURNING id, payload")
	rows, err := tx.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("adding %d events to the outbox: %w", len(evs), err)
	}
	defer rows.Close()
	msgs := make([]outbox.Message, len(evs))
	found := 0
	for rows.Next() {
		var (
			id      int64
			payload string
		)
		if err := rows.Scan(&id, &payload); err != nil {
			return nil, fmt.Errorf("adding %d events to the outbox: %w", len(evs), err)
		}
		i, ok := index[payload]
		if !ok || msgs[i].ID != 0 {
			return nil, fmt.Errorf("adding %d events to the outbox: row %d matches no event", len(evs), id)
		}
		msgs[i] = outbox.Message{ID: id, Event: evs[i]}
		found++
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("adding %d events to the outbox: %w", len(evs), err)
	}
	if found != len(evs) {
		return nil, fmt.Errorf("adding %d events to the outbox: %d rows came back (two equal events?)", len(evs), found)
	}
	return msgs, nil
}

// MarkSentMany records that the broker took the messages ids, in one
// statement.
func (o outboxStore) MarkSentMany(ctx context.Context, ids []int64) error {
	return o.db.markSentMany(ctx, o.db.DB, ids)
}

// MarkSentInTx records, inside tx, that the broker took the messages ids:
// a group commit writes the marks of the events emitted since the previous
// group with its own bookings, at no extra commit.
func (db *DB) MarkSentInTx(ctx context.Context, tx *sql.Tx, ids []int64) error {
	return db.markSentMany(ctx, tx, ids)
}

// execer is what runs a statement: the database or a transaction.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func (db *DB) markSentMany(ctx context.Context, ex execer, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	var list strings.Builder
	for i, id := range ids {
		if i > 0 {
			list.WriteByte(',')
		}
		list.WriteString(strconv.FormatInt(id, 10))
	}
	// The IDs are integers formatted here, not user input: inlining them
	// keeps one statement whatever their number (no parameter limit).
	_, err := ex.ExecContext(ctx, `UPDATE `+db.outbox+` SET sent_at = $1 WHERE id IN (`+list.String()+`)`, Micros(time.Now()))
	if err != nil {
		return fmt.Errorf("marking %d outbox messages sent: %w", len(ids), err)
	}
	return nil
}
