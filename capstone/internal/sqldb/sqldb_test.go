package sqldb_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"example.com/myevents/capstone/internal/outbox"
	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/capstone/internal/sqldb"
	"example.com/myevents/contracts"
)

func TestParse(t *testing.T) {
	tests := []struct {
		dsn  string
		want sqldb.Kind
	}{
		{"", sqldb.SQLite},
		{"sqlite:/tmp/x.db", sqldb.SQLite},
		{"sqlite:relative.db", sqldb.SQLite},
		{"memory:", sqldb.Memory},
		{"postgres://postgres@127.0.0.1:5432/test", sqldb.Postgres},
		{"postgresql://u:p@db/x?sslmode=disable", sqldb.Postgres},
	}
	for _, tc := range tests {
		got, err := sqldb.Parse(tc.dsn)
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %q, %v; want %q", tc.dsn, got, err, tc.want)
		}
	}
	// Unknown forms are errors, never a nil store without an error.
	for _, dsn := range []string{"mysql://root@db/x", "mongodb://x", "memory", "sqlite:", "MEMORY:", "/tmp/x.db", "postgres:/x"} {
		kind, err := sqldb.Parse(dsn)
		if err == nil || !errors.Is(err, sqldb.ErrUnknownDSN) || kind != "" {
			t.Errorf("Parse(%q) = %q, %v; want ErrUnknownDSN", dsn, kind, err)
		}
	}
	// The error says what would work and hides a password, also in a DSN
	// that is not a URL.
	for _, dsn := range []string{"mysql://root:hunter2@db/x", "host=db user=root password=hunter2", "postgres//root:hunter2@db/x", "postgres:/root:hunter2@db/%zz"} {
		_, err := sqldb.Parse(dsn)
		if msg := err.Error(); strings.Contains(msg, "hunter2") || !strings.Contains(msg, `"memory:"`) || !strings.Contains(msg, "postgres://") {
			t.Errorf("Parse(%q): error %q should list the valid forms and hide the password", dsn, msg)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name, dsn, service, want string
	}{
		{"memory is not SQL", "memory:", "eventservice", "memory is not a SQL database"},
		{"unknown scheme", "redis://x", "eventservice", "unknown database"},
		{"bad service name", "", "Event Service", "must be lowercase letters"},
		{"missing directory", "sqlite:" + filepath.Join(t.TempDir(), "no", "such", "dir", "x.db"), "eventservice", "connecting to SQLite database"},
		{"PostgreSQL down", "postgres://postgres:secret@127.0.0.1:1/test?connect_timeout=2", "eventservice", "connecting to PostgreSQL at postgres://postgres:xxxxx@127.0.0.1:1/test"},
		{"PostgreSQL host unknown", "postgres://postgres:secret@no-such-host.invalid/test?connect_timeout=2", "eventservice", "connecting to PostgreSQL at postgres://postgres:xxxxx@no-such-host.invalid/test"},
		{"unparseable PostgreSQL URL", "postgres://postgres:secret@127.0.0.1:1/%zz", "eventservice", "connecting to PostgreSQL at <unparseable URL>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db, err := sqldb.Open(ctx, tc.dsn, tc.service)
			if err == nil {
				db.Close()
				t.Fatalf("Open(%q) succeeded", tc.dsn)
			}
			if db != nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open(%q) = %v, %v; want nil and an error containing %q", tc.dsn, db, err, tc.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("Open(%q): the error shows the password: %v", tc.dsn, err)
			}
			// One line, each failure once: pgx reports every attempt
			// (with TLS, then without), the same refusal twice.
			if strings.Contains(err.Error(), "\n") || strings.Count(err.Error(), "connection refused") > 1 || strings.Count(err.Error(), "no such host") > 1 {
				t.Errorf("Open(%q) = %q, want one line that says each failure once", tc.dsn, err)
			}
		})
	}
}

func TestTimeRoundTrip(t *testing.T) {
	for _, in := range []time.Time{
		{},
		time.Date(2026, 11, 27, 20, 0, 0, 123456000, time.UTC),
		time.Unix(0, 0).UTC(),
		time.Date(1969, 7, 20, 20, 17, 0, 0, time.UTC),
	} {
		if got := sqldb.Time(sqldb.Micros(in)); !reflect.DeepEqual(got, in) {
			t.Errorf("Time(Micros(%v)) = %v", in, got)
		}
	}
}

// sqlBackends opens each SQL database, fresh for the test.
func sqlBackends(t *testing.T) map[string]*sqldb.DB {
	t.Helper()
	out := map[string]*sqldb.DB{}
	for _, b := range servicetest.Backends(t) {
		if b.Name == "memory" {
			continue
		}
		db, err := sqldb.Open(context.Background(), b.DSN, "testservice")
		if err != nil {
			t.Fatalf("%s: %v", b.Name, err)
		}
		t.Cleanup(func() { db.Close() })
		out[b.Name] = db
	}
	return out
}

func TestOutbox(t *testing.T) {
	for name, db := range sqlBackends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			// Migrating twice is harmless.
			for range 2 {
				if err := db.Migrate(ctx, `CREATE TABLE IF NOT EXISTS things (id TEXT PRIMARY KEY)`); err != nil {
					t.Fatal(err)
				}
			}
			ob := db.Outbox()
			ev := &contracts.EventBooked{ID: "b1", EventID: "e1", UserID: "u", Seats: 2, Date: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)}

			// A rolled-back transaction leaves no outbox row.
			boom := errors.New("boom")
			err := db.InTx(ctx, func(tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, `INSERT INTO things (id) VALUES ($1)`, "x"); err != nil {
					return err
				}
				if _, err := db.AddToOutbox(ctx, tx, ev); err != nil {
					return err
				}
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatalf("InTx = %v, want boom", err)
			}
			if n := unsent(t, ob); n != 0 {
				t.Fatalf("after rollback %d unsent, want 0", n)
			}

			// A committed one has it, not due before the grace period.
			var msg outbox.Message
			err = db.InTx(ctx, func(tx *sql.Tx) (err error) {
				msg, err = db.AddToOutbox(ctx, tx, ev)
				return err
			})
			if err != nil || msg.ID == 0 || msg.Event != ev {
				t.Fatalf("AddToOutbox = %+v, %v", msg, err)
			}
			pending, err := ob.Pending(ctx, 0, 10)
			if err != nil || len(pending) != 1 || pending[0].ID != msg.ID || !reflect.DeepEqual(pending[0].Event, contracts.Event(ev)) ||
				pending[0].Attempts != 0 || !pending[0].Next.After(time.Now().Add(outbox.Grace-time.Minute)) || pending[0].Broken != nil {
				t.Fatalf("Pending = %+v, %v; want the message back, due after the grace period", pending, err)
			}
			if pending, err := ob.Pending(ctx, msg.ID, 10); err != nil || len(pending) != 0 {
				t.Fatalf("Pending after its ID = %+v, %v; want nothing", pending, err)
			}

			// Postpone moves it and counts the attempt.
			later := time.Now().Add(time.Hour).Truncate(time.Microsecond)
			if err := ob.Postpone(ctx, msg.ID, 3, later); err != nil {
				t.Fatal(err)
			}
			pending, _ = ob.Pending(ctx, 0, 10)
			if len(pending) != 1 || pending[0].Attempts != 3 || !pending[0].Next.Equal(later) {
				t.Fatalf("Pending = %+v, want one message with 3 attempts, next at %v", pending, later)
			}

			// MarkSent takes it out for good.
			if err := ob.MarkSent(ctx, msg.ID); err != nil {
				t.Fatal(err)
			}
			if n := unsent(t, ob); n != 0 {
				t.Fatalf("after MarkSent %d unsent", n)
			}
			if pending, _ := ob.Pending(ctx, 0, 10); len(pending) != 0 {
				t.Fatalf("sent message still pending: %+v", pending)
			}

			// A row an older version wrote that no longer decodes comes
			// back Broken, for the relay to give up on.
			_, err = db.ExecContext(ctx, `INSERT INTO testservice_outbox (event_name, payload, created_at, next_attempt_at)
				VALUES ('event.created', '{"id":"e","location_id":"l","hall":"h","capacity":0}', 0, 0)`)
			if err != nil {
				t.Fatal(err)
			}
			pending, err = ob.Pending(ctx, 0, 10)
			if err != nil || len(pending) != 1 || pending[0].Broken == nil || pending[0].Event != nil {
				t.Fatalf("Pending = %+v, %v; want the old row, Broken", pending, err)
			}
		})
	}
}

func unsent(t *testing.T, ob outbox.Store) int {
	t.Helper()
	n, err := ob.Unsent(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Two instances starting at once against one PostgreSQL must not trip over
// each other creating the schema.
func TestConcurrentMigrationsOnPostgres(t *testing.T) {
	dsn := servicetest.PostgresDSN(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			db, err := sqldb.Open(context.Background(), dsn, "testservice")
			if err != nil {
				errs <- err
				return
			}
			defer db.Close()
			errs <- db.Migrate(context.Background(), `CREATE TABLE IF NOT EXISTS things (id TEXT PRIMARY KEY)`)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestEmptyDSNIsASQLiteFileInTheWorkingDirectory(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	db, err := sqldb.Open(context.Background(), "", "testservice")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if db.Kind != sqldb.SQLite || !strings.Contains(db.String(), "testservice.db") {
		t.Errorf("opened %s (%s), want the SQLite file testservice.db", db, db.Kind)
	}
	if _, err := os.Stat(filepath.Join(dir, "testservice.db")); err != nil {
		t.Errorf("no database file in the working directory: %v", err)
	}
}
