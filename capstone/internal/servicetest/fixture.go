package servicetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"example.com/myevents/capstone/internal/outbox"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/labs/brokertest"
)

// FastOutbox makes an outbox relay retry within milliseconds.
func FastOutbox() outbox.Options {
	return outbox.Options{Poll: 10 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
}

// ForEachStore opens a store with open on every backend (see Backends),
// fresh for the test, and runs test against each in a parallel subtest;
// the stores are closed when the test ends.
func ForEachStore[S interface{ Close() error }](t *testing.T, open func(ctx context.Context, dsn string) (S, error), test func(t *testing.T, s S)) {
	t.Helper()
	for _, b := range Backends(t) {
		s, err := open(context.Background(), b.DSN)
		if err != nil {
			t.Fatalf("opening the %s store: %v", b.Name, err)
		}
		t.Cleanup(func() { s.Close() })
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			test(t, s)
		})
	}
}

// Unsent counts the unsent messages of an outbox (0 for nil: a store
// without one).
func Unsent(t testing.TB, ob outbox.Store) int {
	t.Helper()
	if ob == nil {
		return 0
	}
	n, err := ob.Unsent(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// WaitSent waits until the outbox ob is empty and em has emitted n events.
func WaitSent(t testing.TB, ob outbox.Store, em *Emitter, n int) {
	t.Helper()
	brokertest.Eventually(t, 5*time.Second, func() error {
		if u := Unsent(t, ob); u != 0 {
			return fmt.Errorf("%d outbox messages unsent", u)
		}
		if got := len(em.Emitted()); got != n {
			return fmt.Errorf("%d events emitted, want %d", got, n)
		}
		return nil
	})
}

// AwaitRefused waits until the emitter has refused n events: a relay
// keeps trying while the broker refuses.
func (e *Emitter) AwaitRefused(t testing.TB, n int) {
	t.Helper()
	brokertest.Eventually(t, 5*time.Second, func() error {
		if got := e.Refused(); got < n {
			return fmt.Errorf("%d attempts so far", got)
		}
		return nil
	})
}

// Err drops the value of a call's result and keeps its error, for
// WantIs.
func Err[V any](_ V, err error) error { return err }

// WantIs fails t for each named error that is not target; the names are
// the calls that returned them ("Bookings(placeholder)").
func WantIs(t testing.TB, target error, errs map[string]error) {
	t.Helper()
	for _, name := range slices.Sorted(maps.Keys(errs)) {
		if err := errs[name]; !errors.Is(err, target) {
			t.Errorf("%s = %v, want %v", name, err, target)
		}
	}
}

// Listen runs l.Listen with h until the test ends, then closes l and
// requires Listen to have returned nil. A test may end before Listen's
// goroutine begins: Close comes first and Listen returns
// msgqueue.ErrClosed, as a listener must (msgqueuetest checks that a
// Close during Listen makes it return nil).
func Listen(t testing.TB, l msgqueue.Listener, h msgqueue.Handler) {
	t.Helper()
	listening := make(chan error, 1)
	go func() { listening <- l.Listen(context.Background(), h) }()
	t.Cleanup(func() {
		l.Close()
		if err := <-listening; err != nil && !errors.Is(err, msgqueue.ErrClosed) {
			t.Errorf("Listen: %v", err)
		}
	})
}
