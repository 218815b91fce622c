package sqldb

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"example.com/myevents/capstone/internal/outbox"
	"example.com/myevents/contracts"
)

// outboxSchema creates the outbox table. A row is unsent while sent_at is
// NULL; next_attempt_at is when the relay may try it (next).
func (db *DB) outboxSchema() []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + db.outbox + ` (
			id ` + Serial + `,
			event_name TEXT NOT NULL,
			payload TEXT NOT NULL,
			created_at BIGINT NOT NULL,
			attempts BIGINT NOT NULL DEFAULT 0,
			next_attempt_at BIGINT NOT NULL,
			sent_at BIGINT
		)`,
		// The relay reads unsent rows in ID order.
		`DROP INDEX IF EXISTS ` + db.outbox + `_unsent`,
		`CREATE INDEX IF NOT EXISTS ` + db.outbox + `_pending ON ` + db.outbox + ` (id) WHERE sent_at IS NULL`,
	}
}

// AddToOutbox stores ev in the outbox inside tx, the transaction that makes
// the change ev announces, so that both are committed or neither is. The
// row is first due after [outbox.Grace]: until then the request that wrote
// it is expected to emit it itself.
func (db *DB) AddToOutbox(ctx context.Context, tx *sql.Tx, ev contracts.Event) (outbox.Message, error) {
	payload, err := json.Marshal(ev)
	if err != nil {
		return outbox.Message{}, fmt.Errorf("encoding %s for the outbox: %w", ev.EventName(), err)
	}
	now := time.Now()
	var id int64
	err = tx.QueryRowContext(ctx,
		`INSERT INTO `+db.outbox+` (event_name, payload, created_at, next_attempt_at) VALUES ($1, $2, $3, $4) RETURNING id`,
		ev.EventName(), string(payload), Micros(now), Micros(now.Add(outbox.Grace)),
	).Scan(&id)
	if err != nil {
		return outbox.Message{}, fmt.Errorf("adding %s to the outbox: %w", ev.EventName(), err)
	}
	return outbox.Message{ID: id, Event: ev}, nil
}

// WriteAnnounced checks ev against its contract, then runs write and adds
// ev to the outbox in one transaction: the change and the event that
// announces it are committed together or not at all. what names the write
// for the error of a value the contract refuses ("storing location").
func (db *DB) WriteAnnounced(ctx context.Context, what string, ev contracts.Event, write func(*sql.Tx) error) (outbox.Message, error) {
	if err := ev.Validate(); err != nil {
		return outbox.Message{}, fmt.Errorf("%s: %w", what, err)
	}
	var msg outbox.Message
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		if err := write(tx); err != nil {
			return err
		}
		var err error
		msg, err = db.AddToOutbox(ctx, tx, ev)
		return err
	})
	return msg, err
}

// Outbox returns the outbox of db.
func (db *DB) Outbox() outbox.Store { return outboxStore{db} }

// outboxStore implements outbox.Store on the outbox table.
type outboxStore struct{ db *DB }

func (o outboxStore) Pending(ctx context.Context, after int64, limit int) ([]outbox.Message, error) {
	var msgs []outbox.Message
	err := o.db.EachRow(ctx, "reading the outbox",
		`SELECT id, event_name, payload, attempts, next_attempt_at FROM `+o.db.outbox+`
		 WHERE sent_at IS NULL AND id > $1 ORDER BY id LIMIT $2`,
		[]any{after, limit}, func(rows *sql.Rows) error {
			var (
				m             outbox.Message
				name, payload string
				next          int64
			)
			if err := rows.Scan(&m.ID, &name, &payload, &m.Attempts, &next); err != nil {
				return err
			}
			m.Next = Time(next)
			// What we wrote ourselves fails to decode only if the contract
			// changed incompatibly (an older version wrote it): the relay
			// gives up on it, loudly, rather than stop for ever.
			var err error
			if m.Event, err = contracts.Decode(name, []byte(payload)); err != nil {
				m.Broken = fmt.Errorf("outbox message %d: %w", m.ID, err)
			}
			msgs = append(msgs, m)
			return nil
		})
	if err != nil {
		return nil, err
	}
	return msgs, nil
}

func (o outboxStore) MarkSent(ctx context.Context, id int64) error {
	_, err := o.db.ExecContext(ctx, `UPDATE `+o.db.outbox+` SET sent_at = $1 WHERE id = $2`, Micros(time.Now()), id)
	if err != nil {
		return fmt.Errorf("marking outbox message %d sent: %w", id, err)
	}
	return nil
}

func (o outboxStore) Postpone(ctx context.Context, id int64, attempts int, next time.Time) error {
	_, err := o.db.ExecContext(ctx,
		`UPDATE `+o.db.outbox+` SET attempts = $1, next_attempt_at = $2 WHERE id = $3 AND sent_at IS NULL`,
		attempts, Micros(next), id)
	if err != nil {
		return fmt.Errorf("postponing outbox message %d: %w", id, err)
	}
	return nil
}

func (o outboxStore) Unsent(ctx context.Context) (int, error) {
	var n int
	if err := o.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+o.db.outbox+` WHERE sent_at IS NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting unsent outbox messages: %w", err)
	}
	return n, nil
}
