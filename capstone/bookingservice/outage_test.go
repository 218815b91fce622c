package bookingservice

import (
	"context"
	"testing"
	"time"

	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/capstone/internal/sqldb"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
)

// TestStoreOutageKeepsTheEvent: an event the store cannot take because
// the store is stuck (its table locked by another session past the
// handler's own deadline, applyDeadline; the listener's context has none)
// is msgqueue.Unavailable, which the listener keeps
// and hands over again, not a failure of the event that would use up its
// deliveries and end in the dead letters; once the store is free, the
// same event applies.
func TestStoreOutageKeepsTheEvent(t *testing.T) {
	ctx := context.Background()
	dsn := servicetest.PostgresDSN(t)
	store, err := OpenStore(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	svc, err := New(store, &servicetest.Emitter{}, Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })

	locker, err := sqldb.Open(ctx, dsn, "locker")
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close()
	tx, err := locker.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `LOCK TABLE booking_events IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}

	at := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	ev := &contracts.EventCreated{ID: "outage-show", Name: "Show", LocationID: "loc", Hall: "Main",
		Capacity: 10, StartDate: at, EndDate: at.Add(time.Hour)}
	svc.applyTimeout = 300 * time.Millisecond // applyDeadline, shortened
	err = svc.Handle(ctx, ev)
	if !msgqueue.IsUnavailable(err) || msgqueue.IsPermanent(err) {
		t.Fatalf("Handle with the store locked: %v (unavailable %v, permanent %v), want unavailable",
			err, msgqueue.IsUnavailable(err), msgqueue.IsPermanent(err))
	}

	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	// The store is free: the service's own deadline again, not the 300 ms
	// that a loaded machine's PostgreSQL may need for the write itself.
	svc.applyTimeout = applyDeadline
	if err := svc.Handle(ctx, ev); err != nil {
		t.Fatalf("Handle once the store is free: %v", err)
	}
	if _, err := store.Show(ctx, ev.ID); err != nil {
		t.Errorf("the event after the outage: %v", err)
	}
}
