package sqldb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
)

// IsDataError reports whether err is the database refusing a value rather
// than failing: PostgreSQL's data exceptions (SQLSTATE class 22: a NUL or
// invalid UTF-8 in text, a number out of range), integrity violations
// (class 23) and program limits (class 54: an index entry too large);
// SQLite's "too big", constraint and type mismatch errors. Retrying cannot
// fix such an error, so a listener's handler makes it permanent and an HTTP
// handler answers 400. The services check every value before it reaches
// the store; this catches what a check missed.
func IsDataError(err error) bool {
	if err == nil {
		return false // and no allocation: errors.As's targets escape
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:min(2, len(pgErr.Code))] {
		case "22", "23", "54":
			return true
		}
		return false
	}
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		switch liteErr.Code() & 0xff { // the primary result code
		case sqliteTooBig, sqliteConstraint, sqliteMismatch:
			return true
		}
	}
	return false
}

// SQLite's primary result codes for refused data.
const (
	sqliteTooBig     = 18
	sqliteConstraint = 19
	sqliteMismatch   = 20
)

// IsUnavailable reports whether err is the database failing rather than
// refusing a value: it cannot be reached, its connection was cut, it is
// full, read-only, locked or damaged, or its tables are gone. Such an
// error says nothing about the request or event at hand: an HTTP handler
// answers 503, and a listener's handler makes it msgqueue.Unavailable, so
// the event is kept and tried again rather than dead-lettered. It is
// PostgreSQL's SQLSTATE classes 08 (connection), 40 (a transaction rolled
// back for a deadlock or serialization), 53 (insufficient resources), 57
// (operator intervention: shutdown, a terminated backend), 58 (system
// error), 3D (no such database) and 42P01 (no such table); SQLite's busy,
// locked, out of memory, read-only, I/O, corrupt, full, cannot-open and
// not-a-database errors; a connection that could not be made or broke;
// and a deadline that ran out.
func IsUnavailable(err error) bool {
	if err == nil || IsDataError(err) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:min(2, len(pgErr.Code))] {
		case "08", "40", "53", "57", "58", "3D":
			return true
		}
		return pgErr.Code == "42P01"
	}
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		switch liteErr.Code() & 0xff {
		case sqliteBusy, sqliteLocked, sqliteNoMem, sqliteReadOnly, sqliteIOErr, sqliteCorrupt, sqliteFull, sqliteCantOpen, sqliteNotADB:
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) ||
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded) ||
		pgconn.SafeToRetry(err)
}

// SQLite's primary result codes for a database that is failing.
const (
	sqliteBusy     = 5
	sqliteLocked   = 6
	sqliteNoMem    = 7
	sqliteReadOnly = 8
	sqliteIOErr    = 10
	sqliteCorrupt  = 11
	sqliteFull     = 13
	sqliteCantOpen = 14
	sqliteNotADB   = 26
)
