// Package sqldb opens the SQL database a capstone service keeps its state
// in, and keeps the service's outbox there.
//
// Which store a service uses is chosen by one string, its DSN:
//
//	""                    an embedded SQLite file in the working directory
//	"sqlite:PATH"         an embedded SQLite file at PATH
//	"postgres://..."      PostgreSQL ("postgresql://..." too)
//	"memory:"             in memory, no database at all (the services
//	                      handle this one themselves; see [Parse])
//
// Anything else is an error that lists these forms. Both SQL databases go
// through one database/sql code path: SQLite through the pure-Go
// modernc.org/sqlite driver, PostgreSQL through pgx's stdlib driver. The
// services write SQL both understand ($1 placeholders, ON CONFLICT,
// RETURNING, times as BIGINT microseconds); the few differences (the
// auto-increment column, locking while the schema is created, connection
// settings) are handled here, once.
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"example.com/myevents/capstone/internal/outbox"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver

	"example.com/myevents/capstone/endpoint"
)

// Kind is the kind of store a DSN selects.
type Kind string

// The kinds of store.
const (
	Memory   Kind = "memory"
	SQLite   Kind = "sqlite"
	Postgres Kind = "postgres"
)

// ErrUnknownDSN is wrapped by the error for a DSN no store understands.
var ErrUnknownDSN = errors.New("unknown database")

// Parse says which kind of store dsn selects.
func Parse(dsn string) (Kind, error) {
	switch {
	case dsn == "":
		return SQLite, nil
	case dsn == "memory:":
		return Memory, nil
	case strings.HasPrefix(dsn, "sqlite:") && len(dsn) > len("sqlite:"):
		return SQLite, nil
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return Postgres, nil
	}
	return "", fmt.Errorf(`%w %s: use "" (a SQLite file in the working directory), "sqlite:PATH", "postgres://USER@HOST:PORT/DB" or "memory:"`,
		ErrUnknownDSN, endpoint.Quote(dsn))
}

// DB is an open SQL database with its dialect.
type DB struct {
	*sql.DB
	Kind Kind
	// where names the database in error messages, without a password.
	where string
	// outbox is the name of the service's outbox table.
	outbox string
	// path and file are a SQLite database's file, as opened (CheckFile).
	path string
	file os.FileInfo
}

// validName reports whether a service name is safe in a table name.
func validName(s string) bool {
	for _, r := range s {
		if r < 'a' || r > 'z' {
			return false
		}
	}
	return s != ""
}

// Open opens and pings the SQL database dsn selects for the named service
// ("eventservice", "bookingservice"). An empty dsn means the SQLite file
// SERVICE.db in the working directory. "memory:" and unknown forms are
// errors.
//
// Each service owns its database. Should two services be pointed at the same
// one anyway, their tables have distinct names (the outbox is SERVICE_outbox)
// so they do not corrupt each other.
func Open(ctx context.Context, dsn, service string) (*DB, error) {
	kind, err := Parse(dsn)
	if err != nil {
		return nil, err
	}
	if !validName(service) {
		return nil, fmt.Errorf("opening a database for service %q: the name must be lowercase letters", service)
	}
	var db *DB
	switch kind {
	case SQLite:
		path := strings.TrimPrefix(dsn, "sqlite:")
		if dsn == "" {
			path = service + ".db"
		}
		db, err = openSQLite(path)
	case Postgres:
		db, err = openPostgres(dsn)
	default:
		return nil, fmt.Errorf("opening %q: %s is not a SQL database", dsn, kind)
	}
	if err != nil {
		return nil, err
	}
	db.outbox = service + "_outbox"
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connecting to %s: %w", db.where, oneLine{err})
	}
	if db.Kind == SQLite {
		// The connection has the file open now: remember which file it
		// is, for CheckFile, by an absolute path, which a change of the
		// working directory does not move.
		if db.path, err = filepath.Abs(db.path); err == nil {
			db.file, err = os.Stat(db.path)
		}
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("opening %s: %w", db.where, err)
		}
	}
	return db, nil
}

// openSQLite opens a SQLite file. SQLite has one writer at a time, so the
// pool holds a single connection: writers queue in Go instead of failing
// with "database is locked". Foreign keys are off in SQLite unless asked
// for; WAL lets a reader of another process read while we write.
func openSQLite(path string) (*DB, error) {
	params := url.Values{}
	params.Set("_busy_timeout", "10000")
	params.Set("_foreign_keys", "1")
	params.Set("_journal_mode", "WAL")
	params.Set("_txlock", "immediate")
	sdb, err := sql.Open("sqlite", "file:"+path+"?"+params.Encode())
	if err != nil {
		return nil, fmt.Errorf("opening SQLite database %s: %w", path, err)
	}
	sdb.SetMaxOpenConns(1)
	return &DB{DB: sdb, Kind: SQLite, where: "SQLite database " + path, path: path}, nil
}

// maxPostgresConns caps each service's connections: PostgreSQL allows 100
// by default, shared by every service and test.
const maxPostgresConns = 8

// openPostgres opens a PostgreSQL database.
func openPostgres(dsn string) (*DB, error) {
	where := "PostgreSQL at " + endpoint.Redact(dsn)
	sdb, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", where, err)
	}
	sdb.SetMaxOpenConns(maxPostgresConns)
	sdb.SetMaxIdleConns(maxPostgresConns)
	sdb.SetConnMaxIdleTime(5 * time.Minute)
	return &DB{DB: sdb, Kind: Postgres, where: where}, nil
}

// String names the database, without a password.
func (db *DB) String() string { return db.where }

// Serial stands, in a schema statement, for the column type of an
// auto-incrementing integer primary key, which SQLite and PostgreSQL spell
// differently.
const Serial = "{{serial}}"

// serial is what Serial stands for in db's dialect.
func (db *DB) serial() string {
	if db.Kind == Postgres {
		return "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
	}
	return "INTEGER PRIMARY KEY AUTOINCREMENT"
}

// Migrate creates the outbox table and then runs the service's schema
// statements, in one transaction. Statements must be idempotent (CREATE
// TABLE IF NOT EXISTS ...) and may use [Serial]. PostgreSQL takes an
// advisory lock first, so two instances starting together do not both
// create the same table.
//
// Every integer column is 64-bit: SQLite's INTEGER always is, and on
// PostgreSQL the schema says BIGINT. A PostgreSQL table that an older
// version created with 32-bit INTEGER columns is widened here, so a count
// never overflows its column.
func (db *DB) Migrate(ctx context.Context, schema ...string) error {
	return db.InTx(ctx, func(tx *sql.Tx) error {
		stmts := append(db.outboxSchema(), schema...)
		if db.Kind == Postgres {
			stmts = append([]string{"SELECT pg_advisory_xact_lock(73110)"}, stmts...)
		}
		for _, s := range stmts {
			s = strings.ReplaceAll(s, Serial, db.serial())
			if _, err := tx.ExecContext(ctx, s); err != nil {
				return fmt.Errorf("creating the schema of %s: %w", db.where, err)
			}
		}
		if db.Kind == Postgres {
			return db.widen(ctx, tx, createdTables(stmts))
		}
		return nil
	})
}

// createTable finds the table a schema statement creates.
var createTable = regexp.MustCompile(`(?i)CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+(\w+)`)

// createdTables lists the tables the statements create.
func createdTables(stmts []string) []string {
	var tables []string
	for _, s := range stmts {
		if m := createTable.FindStringSubmatch(s); m != nil {
			tables = append(tables, strings.ToLower(m[1]))
		}
	}
	return tables
}

// widen turns every 32-bit integer column of tables (in the current schema)
// into BIGINT.
func (db *DB) widen(ctx context.Context, tx *sql.Tx, tables []string) error {
	rows, err := tx.QueryContext(ctx,
		`SELECT table_name, column_name FROM information_schema.columns
		 WHERE table_schema = current_schema() AND data_type = 'integer' AND table_name = ANY($1)
		 ORDER BY table_name, ordinal_position`, tables)
	if err != nil {
		return fmt.Errorf("looking for 32-bit columns in %s: %w", db.where, err)
	}
	var alters []string
	for rows.Next() {
		var table, column string
		if err := rows.Scan(&table, &column); err != nil {
			rows.Close()
			return fmt.Errorf("looking for 32-bit columns in %s: %w", db.where, err)
		}
		alters = append(alters, fmt.Sprintf(`ALTER TABLE %q ALTER COLUMN %q TYPE BIGINT`, table, column))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("looking for 32-bit columns in %s: %w", db.where, err)
	}
	for _, a := range alters {
		if _, err := tx.ExecContext(ctx, a); err != nil {
			return fmt.Errorf("widening a column of %s to 64 bits (%s): %w", db.where, a, err)
		}
	}
	return nil
}

// InTx runs fn in a transaction and commits it if fn returns nil; otherwise
// it rolls back and returns fn's error.
func (db *DB) InTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning a transaction on %s: %w", db.where, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback() // the error that matters is fn's
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing to %s: %w", db.where, err)
	}
	return nil
}

// EachRow runs query and calls scan for each row it returns, in order.
// what names the reading in errors ("reading events: …").
func (db *DB) EachRow(ctx context.Context, what, query string, args []any, scan func(*sql.Rows) error) error {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// Micros turns a time into what a BIGINT time column holds: microseconds
// since 1970 (the zero time fits too).
func Micros(t time.Time) int64 { return t.UnixMicro() }

// Time turns a BIGINT time column back into a UTC time.
func Time(us int64) time.Time { return time.UnixMicro(us).UTC() }

// oneLine is an error whose text is one line: each line of the error it
// wraps that no line before it already says (in full or at its end),
// joined by "; " (after a line that ends in a colon, by that colon). pgx
// reports every attempt of a connection on a line of its own (with TLS,
// then without), the same refusal twice, and a command's error is one
// sentence.
type oneLine struct{ err error }

func (e oneLine) Error() string {
	var b strings.Builder
	var seen []string
	for _, line := range strings.Split(e.err.Error(), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || slices.ContainsFunc(seen, func(s string) bool { return strings.HasSuffix(s, line) }) {
			continue
		}
		if len(seen) > 0 {
			if strings.HasSuffix(seen[len(seen)-1], ":") {
				b.WriteString(" ")
			} else {
				b.WriteString("; ")
			}
		}
		seen = append(seen, line)
		b.WriteString(line)
	}
	return b.String()
}

func (e oneLine) Unwrap() error { return e.err }

// OpenStore opens the store a service's dsn selects: newMemory's store for
// "memory:", otherwise newSQL's store over the SQL database Open gives (and
// closes that database again if newSQL fails). label names the store in
// errors ("the EventService store").
func OpenStore[S any](ctx context.Context, dsn, service, label string, newMemory func() S, newSQL func(context.Context, *DB) (S, error)) (S, error) {
	var zero S
	kind, err := Parse(dsn)
	if err != nil {
		return zero, fmt.Errorf("opening %s: %w", label, err)
	}
	if kind == Memory {
		return newMemory(), nil
	}
	db, err := Open(ctx, dsn, service)
	if err != nil {
		return zero, fmt.Errorf("opening %s: %w", label, err)
	}
	s, err := newSQL(ctx, db)
	if err != nil {
		db.Close()
		return zero, err
	}
	return s, nil
}

// Store is what every service's SQL store does alike: its outbox, Ping
// and Close. A service's store embeds it beside its own handle on the
// database.
type Store struct {
	db *DB
}

// NewStore creates schema in db if needed (label names the store in the
// error, "the EventService store") and returns the common part of a
// store over db, which closes db when it is closed.
func NewStore(ctx context.Context, db *DB, label string, schema ...string) (Store, error) {
	if err := db.Migrate(ctx, schema...); err != nil {
		return Store{}, fmt.Errorf("preparing %s: %w", label, err)
	}
	return Store{db: db}, nil
}

// Outbox returns the store's outbox.
func (s Store) Outbox() outbox.Store { return s.db.Outbox() }

// Ping reports whether the database answers, and for SQLite whether its
// file is still the one the service opened (CheckFile).
func (s Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("pinging %s: %w", s.db, err)
	}
	return s.db.CheckFile()
}

// CheckFile reports a SQLite database whose file was deleted or replaced
// while the service has it open: SQLite goes on writing to the file it
// opened, which nobody can open again, so every write since is lost when
// the service stops, though each answered 201. (The answer used to be a
// 200 from /healthz all along.) For PostgreSQL it reports nil.
func (db *DB) CheckFile() error {
	if db.file == nil {
		return nil
	}
	now, err := os.Stat(db.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("the file of %s was deleted while the service has it open: what it writes now is lost when it stops; restart it", db.where)
	case err != nil:
		return fmt.Errorf("checking the file of %s: %w", db.where, err)
	case !os.SameFile(db.file, now):
		return fmt.Errorf("the file of %s was replaced while the service has it open: what it writes now goes to the old file; restart it", db.where)
	}
	return nil
}

// Close closes the database.
func (s Store) Close() error { return s.db.Close() }

// InMemory is what every service's memory store does alike: it keeps no
// outbox (Outbox returns nil), is always reachable, and has nothing to
// close. A service's memory store embeds it.
type InMemory struct{}

// Outbox returns nil: a memory store keeps none.
func (InMemory) Outbox() outbox.Store { return nil }

// Ping always succeeds.
func (InMemory) Ping(context.Context) error { return nil }

// Close does nothing.
func (InMemory) Close() error { return nil }
