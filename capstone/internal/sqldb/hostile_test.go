package sqldb_test

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/capstone/internal/sqldb"
)

// TestMigrateWidensIntegersOnPostgres: a table an older version created
// with 32-bit INTEGER columns is widened to BIGINT, so a count of three
// billion fits.
func TestMigrateWidensIntegersOnPostgres(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, servicetest.PostgresDSN(t), "widen")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	old := `CREATE TABLE IF NOT EXISTS counts (id TEXT PRIMARY KEY, booked INTEGER NOT NULL)`
	if _, err := db.ExecContext(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO counts VALUES ('a', 3000000000)`); !sqldb.IsDataError(err) {
		t.Fatalf("3e9 in an INTEGER column: %v, want a data error", err)
	}
	if err := db.Migrate(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO counts VALUES ('a', 3000000000)`); err != nil {
		t.Fatalf("3e9 after Migrate: %v", err)
	}
	var n int
	err = db.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.columns
		WHERE table_schema = current_schema() AND data_type = 'integer'`).Scan(&n)
	if err != nil || n != 0 {
		t.Errorf("%d 32-bit columns left (%v), want none: the outbox's too", n, err)
	}
}

// TestIsDataError: what the database refuses as data is told apart from an
// outage, on both databases.
func TestIsDataError(t *testing.T) {
	ctx := context.Background()
	for name, db := range sqlBackends(t) {
		t.Run(name, func(t *testing.T) {
			if err := db.Migrate(ctx, `CREATE TABLE IF NOT EXISTS words (id TEXT PRIMARY KEY, n BIGINT NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			type query struct {
				sql  string
				args []any
			}
			refused := []query{{`INSERT INTO words VALUES ('a', NULL)`, nil}}
			if name == "postgres" {
				refused = append(refused,
					query{`INSERT INTO words VALUES ($1, 1)`, []any{"a\x00b"}},
					query{`SELECT 9223372036854775807 + $1`, []any{1}})
			}
			for _, q := range refused {
				if _, err := db.ExecContext(ctx, q.sql, q.args...); err == nil || !sqldb.IsDataError(err) {
					t.Errorf("%q %q: %v, want a data error", q.sql, q.args, err)
				}
			}
			if sqldb.IsDataError(errors.New("connection refused")) || sqldb.IsDataError(nil) {
				t.Error("an outage is not a data error")
			}
		})
	}
}

// TestIsUnavailable: a database that fails (read-only, a connection cut by
// the server, nobody listening) is told apart from one refusing a value,
// so that a listener keeps the event and an HTTP client gets 503.
func TestIsUnavailable(t *testing.T) {
	ctx := context.Background()
	t.Run("sqlite read-only", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ro.db")
		db, err := sqldb.Open(ctx, "sqlite:"+path, "readonly")
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(ctx, `CREATE TABLE IF NOT EXISTS words (id TEXT PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
		db.Close()
		ro, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		defer ro.Close()
		_, err = ro.ExecContext(ctx, `INSERT INTO words VALUES ('a')`)
		if !sqldb.IsUnavailable(err) || sqldb.IsDataError(err) {
			t.Errorf("writing a read-only database: %v: unavailable %v, data error %v; want unavailable only",
				err, sqldb.IsUnavailable(err), sqldb.IsDataError(err))
		}
	})
	t.Run("postgres backend terminated", func(t *testing.T) {
		db, err := sqldb.Open(ctx, servicetest.PostgresDSN(t), "terminated")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		_, err = db.ExecContext(ctx, `SELECT pg_terminate_backend(pg_backend_pid())`)
		if !sqldb.IsUnavailable(err) || sqldb.IsDataError(err) {
			t.Errorf("a terminated backend: %v: unavailable %v, data error %v; want unavailable only",
				err, sqldb.IsUnavailable(err), sqldb.IsDataError(err))
		}
	})
	t.Run("postgres nobody listening", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // nobody listens there now
		db, err := sql.Open("pgx", "postgres://postgres@"+addr+"/test?sslmode=disable&connect_timeout=2")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		err = db.PingContext(ctx)
		if !sqldb.IsUnavailable(err) {
			t.Errorf("no PostgreSQL at the address: %v, want unavailable", err)
		}
	})
	for name, db := range sqlBackends(t) {
		t.Run(name+" data errors are not outages", func(t *testing.T) {
			if err := db.Migrate(ctx, `CREATE TABLE IF NOT EXISTS words (id TEXT PRIMARY KEY, n BIGINT NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, `INSERT INTO words VALUES ('a', NULL)`); sqldb.IsUnavailable(err) {
				t.Errorf("a NULL in a NOT NULL column: %v counted as unavailable", err)
			}
		})
	}
	if sqldb.IsUnavailable(nil) || sqldb.IsUnavailable(errors.New("the handler has a bug")) {
		t.Error("nil and an unknown error are not outages")
	}
}

// TestPingSeesADeletedSQLiteFile: SQLite goes on writing to a file deleted
// under it, which nobody can open again: Ping, and so /healthz, says so,
// and says so too of a file replaced by another.
func TestPingSeesADeletedSQLiteFile(t *testing.T) {
	ctx := context.Background()
	for _, how := range []string{"deleted", "replaced"} {
		t.Run(how, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "gone.db")
			db, err := sqldb.Open(ctx, "sqlite:"+path, "gone")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			store, err := sqldb.NewStore(ctx, db, "a store", `CREATE TABLE IF NOT EXISTS words (id TEXT PRIMARY KEY)`)
			if err != nil {
				t.Fatal(err)
			}
			if err := store.Ping(ctx); err != nil {
				t.Fatalf("Ping of a fresh file: %v", err)
			}
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if how == "replaced" {
				if err := os.WriteFile(path, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			// The database still answers: it writes to the deleted file.
			if _, err := db.ExecContext(ctx, `INSERT INTO words VALUES ('lost')`); err != nil {
				t.Fatalf("writing after the file was %s: %v", how, err)
			}
			if err := store.Ping(ctx); err == nil || !strings.Contains(err.Error(), how) {
				t.Errorf("Ping after the file was %s: %v, want an error saying so", how, err)
			}
		})
	}
}

// TestPingAfterAChangeOfDirectory: a SQLite file opened by a relative path
// is the same file after the process changes its working directory; Ping
// said it was deleted.
func TestPingAfterAChangeOfDirectory(t *testing.T) {
	ctx := context.Background()
	t.Chdir(t.TempDir())
	db, err := sqldb.Open(ctx, "sqlite:rel.db", "relative")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store, err := sqldb.NewStore(ctx, db, "a store")
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	if err := store.Ping(ctx); err != nil {
		t.Errorf("Ping after a change of directory: %v", err)
	}
}
