package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"

	"example.com/myevents/capstone/endpoint"
)

// FreshSchema creates schema in the PostgreSQL at base (a postgres:// URL)
// and returns a DSN whose search_path is that schema, so that whoever
// opens it gets tables of its own beside others on one database, and
// drop, which drops the schema with everything in it. The load test and
// the services' tests use it; the services never do.
func FreshSchema(ctx context.Context, base, schema string) (dsn string, drop func() error, err error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", nil, fmt.Errorf("parsing %s: %w", endpoint.Redact(base), err)
	}
	db, err := sql.Open("pgx", base)
	if err != nil {
		return "", nil, fmt.Errorf("opening PostgreSQL at %s: %w", endpoint.Redact(base), err)
	}
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		return "", nil, errors.Join(
			fmt.Errorf("creating schema %s in PostgreSQL at %s: %w", schema, endpoint.Redact(base), err),
			db.Close())
	}
	drop = func() error {
		defer db.Close()
		if _, err := db.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			return fmt.Errorf("dropping schema %s: %w", schema, err)
		}
		return nil
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), drop, nil
}
