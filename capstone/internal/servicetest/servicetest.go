// Package servicetest helps the capstone services' tests: the three store
// backends every store specification runs against (memory, SQLite in a
// temporary directory, PostgreSQL in a fresh schema), and an emitter that
// records what it emitted and fails on demand.
package servicetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver

	"example.com/myevents/capstone/endpoint"
	"example.com/myevents/capstone/internal/sqldb"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// DefaultPostgres is the PostgreSQL the tests use unless TEST_DATABASE_URL
// names another.
const DefaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Backend is one store a specification runs against.
type Backend struct {
	Name string
	DSN  string
}

// Backends returns the three stores, each fresh for this test: memory,
// SQLite in t.TempDir(), and PostgreSQL in a schema of its own that is
// dropped when the test ends.
func Backends(t testing.TB) []Backend {
	t.Helper()
	return []Backend{
		{Name: "memory", DSN: "memory:"},
		{Name: "sqlite", DSN: SQLiteDSN(t)},
		{Name: "postgres", DSN: PostgresDSN(t)},
	}
}

// SQLiteDSN returns the DSN of a new SQLite file in t.TempDir().
func SQLiteDSN(t testing.TB) string {
	t.Helper()
	return "sqlite:" + filepath.Join(t.TempDir(), "store.db")
}

// PostgresDSN creates an empty schema in the test PostgreSQL
// ($TEST_DATABASE_URL, else [DefaultPostgres]) and returns a DSN whose
// search_path is that schema, so each test has its own tables, parallel
// tests included. The schema is dropped when the test ends. A PostgreSQL
// that does not answer skips the test, or fails it when CI is set, so CI
// cannot pass by skipping.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv("TEST_DATABASE_URL")
	if base == "" {
		base = DefaultPostgres
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := sql.Open("pgx", base)
	if err == nil {
		if err = admin.PingContext(ctx); err != nil {
			admin.Close()
		}
	}
	if err != nil {
		msg := fmt.Sprintf("PostgreSQL at %s does not answer (%v): start it, or set TEST_DATABASE_URL=postgres://USER@HOST:PORT/DB", endpoint.Redact(base), err)
		if brokertest.InCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	defer admin.Close()
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix) // crypto/rand.Read never fails
	dsn, drop, err := sqldb.FreshSchema(ctx, base, "test_"+hex.EncodeToString(suffix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Error(err)
		}
	})
	return dsn
}

// ErrRefused is what a failing Emitter returns.
var ErrRefused = errors.New("servicetest: the broker refused the event")

// Emitter is a msgqueue.Emitter that refuses events while Fail is on,
// passes the others to Next (if set; for example a memory bus's emitter)
// and records those Next accepted.
type Emitter struct {
	Next msgqueue.Emitter

	mu      sync.Mutex
	fail    bool
	emitted []contracts.Event
	refused int
}

// Fail makes Emit refuse (on) or accept (off) events from now on.
func (e *Emitter) Fail(on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fail = on
}

// Emit refuses ev with ErrRefused while Fail is on; otherwise it passes ev
// to Next and records it if Next accepted it.
func (e *Emitter) Emit(ctx context.Context, ev contracts.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.mu.Lock()
	if e.fail {
		e.refused++
		e.mu.Unlock()
		return ErrRefused
	}
	e.mu.Unlock()
	if e.Next != nil {
		if err := e.Next.Emit(ctx, ev); err != nil {
			return err
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.emitted = append(e.emitted, ev)
	return nil
}

// Health is Next's health; nil without Next.
func (e *Emitter) Health(ctx context.Context) error {
	if e.Next == nil {
		return nil
	}
	return e.Next.Health(ctx)
}

// Close closes Next, if set.
func (e *Emitter) Close() error {
	if e.Next != nil {
		return e.Next.Close()
	}
	return nil
}

// Emitted returns a copy of the accepted events, in order.
func (e *Emitter) Emitted() []contracts.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.emitted)
}

// Refused counts the events refused so far.
func (e *Emitter) Refused() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.refused
}
