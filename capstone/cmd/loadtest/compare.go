package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"example.com/myevents/capstone/bookingservice"
	"example.com/myevents/capstone/internal/sqldb"
)

// compare measures, in one run: a bare loop of one SQLite transaction per
// booking (the rate one commit per booking allows on this disk), the
// service's one-at-a-time path (-group 1) and its group path, then the
// loop again, and prints the rates and their ratios. Only the ratios mean
// much on a busy machine: the rounds run one after the other, under the
// same load.
func compare(ctx context.Context, s settings, out io.Writer, log *slog.Logger) error {
	group := s.group
	if group <= 1 {
		group = bookingservice.DefaultGroup
	}
	before, err := baseline(ctx, s.n, 1)
	if err != nil {
		return err
	}
	one := s
	one.group, one.cpuprofile = 1, ""
	old, err := measure(ctx, one, log)
	if err != nil {
		return fmt.Errorf("the one-at-a-time path: %w", err)
	}
	grouped := s
	grouped.group = group
	now, err := measure(ctx, grouped, log)
	if err != nil {
		return fmt.Errorf("the group path: %w", err)
	}
	after, err := baseline(ctx, s.n, 1)
	if err != nil {
		return err
	}
	ceiling, err := baseline(ctx, s.n, 16)
	if err != nil {
		return err
	}
	base := (before.rate + after.rate) / 2

	now.print(out, s)

	fmt.Fprintf(out, "baseline:   %s: %.0f bookings/s before, %.0f after (mean %.0f)\n", before.describe, before.rate, after.rate, base)
	fmt.Fprintf(out, "batched:    %s: %.0f bookings/s\n", ceiling.describe, ceiling.rate)
	fmt.Fprintf(out, "old path:   -group 1, a transaction per booking: %.0f bookings/s, %s\n", old.rate(), old.latency())
	fmt.Fprintf(out, "new path:   -group %d, group commit: %.0f bookings/s, %s\n", group, now.rate(), now.latency())
	fmt.Fprintf(out, "ratios:     new/old %.2f, new/baseline %.2f, old/baseline %.2f\n", now.rate()/old.rate(), now.rate()/base, old.rate()/base)
	return nil
}

// loop is what one baseline loop measured.
type loop struct {
	describe string
	rate     float64
}

// baseline books n bookings of one seat through BookingService's SQLite
// store in a plain loop, per transactions of perTx bookings (Book for 1,
// BookMany otherwise): the same statements as the service (the event's
// row, the booking, its outbox row), without HTTP or a broker. It uses a
// SQLite file of its own, with the service's settings.
func baseline(ctx context.Context, n, perTx int) (loop, error) {
	dir, err := os.MkdirTemp("", "myevents-loadtest-baseline-")
	if err != nil {
		return loop{}, err
	}
	defer os.RemoveAll(dir)
	db, err := sqldb.Open(ctx, "sqlite:"+filepath.Join(dir, "baseline.db"), "bookingservice")
	if err != nil {
		return loop{}, fmt.Errorf("the baseline loop: %w", err)
	}
	var mode string
	var sync int
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		db.Close()
		return loop{}, fmt.Errorf("the baseline loop: %w", err)
	}
	if err := db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
		db.Close()
		return loop{}, fmt.Errorf("the baseline loop: %w", err)
	}
	store, err := bookingservice.NewSQLStore(ctx, db)
	if err != nil {
		db.Close()
		return loop{}, fmt.Errorf("the baseline loop: %w", err)
	}
	defer store.Close()
	ev := bookingservice.Show{ID: "baseline", Name: "Baseline", LocationID: "loc", Hall: "Main", Capacity: n,
		StartDate: time.Unix(1795118400, 0), EndDate: time.Unix(1795129200, 0)}
	if err := store.SaveShow(ctx, ev); err != nil {
		return loop{}, fmt.Errorf("the baseline loop: %w", err)
	}
	start := time.Now()
	for i := 0; i < n; i += perTx {
		bs := make([]bookingservice.Booking, 0, perTx)
		for j := i; j < min(i+perTx, n); j++ {
			bs = append(bs, bookingservice.Booking{ID: fmt.Sprintf("b-%d", j), ShowID: ev.ID, UserID: fmt.Sprintf("load-%d", j),
				Seats: 1, Date: time.Now().UTC().Truncate(time.Microsecond)})
		}
		if perTx == 1 {
			_, err = store.Book(ctx, bs[0])
		} else {
			_, err = store.BookMany(ctx, bs, nil)
		}
		if err != nil {
			return loop{}, fmt.Errorf("the baseline loop: %w", err)
		}
	}
	rate := float64(n) / time.Since(start).Seconds()
	what := "a loop of one SQLite transaction per booking"
	if perTx > 1 {
		what = fmt.Sprintf("the same loop, %d bookings per transaction", perTx)
	}
	return loop{describe: fmt.Sprintf("%s (journal_mode=%s, synchronous=%d, one connection)", what, mode, sync), rate: rate}, nil
}
