package sqldb

import (
	"errors"

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
