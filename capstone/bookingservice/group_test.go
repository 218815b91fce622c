package bookingservice

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// sqlBackends runs test on a fresh SQLStore of each SQL database.
func sqlBackends(t *testing.T, test func(t *testing.T, s *SQLStore)) {
	for _, b := range servicetest.Backends(t) {
		if b.Name == "memory" {
			continue
		}
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			s, err := OpenStore(context.Background(), b.DSN)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			test(t, s.(*SQLStore))
		})
	}
}

// TestBookManyDecidesInArrivalOrder: one group transaction answers each
// booking as Book would have one after the other, and stores exactly the
// ones it sold, each with its event.booked in the outbox.
func TestBookManyDecidesInArrivalOrder(t *testing.T) {
	sqlBackends(t, func(t *testing.T, s *SQLStore) {
		ctx := context.Background()
		saveShow(t, s, "ev", 5)
		at := time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)
		bs := []Booking{
			{ID: "a", ShowID: "ev", UserID: "u", Seats: 2, Date: at},
			{ID: "b", ShowID: "ev", UserID: "u", Seats: 4, Date: at}, // 3 left
			{ID: "c", ShowID: "ev", UserID: "u", Seats: 3, Date: at}, // the last 3
			{ID: "d", ShowID: "nowhere", UserID: "u", Seats: 1, Date: at},
			{ID: "e", ShowID: "ev", UserID: "u", Seats: 0, Date: at},
			{ID: "f", ShowID: "ev", UserID: "u", Seats: 1, Date: at}, // none left
		}
		res, err := s.BookMany(ctx, bs, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := []error{nil, ErrSoldOut, nil, ErrNotFound, contracts.ErrInvalid, ErrSoldOut}
		for i, r := range res {
			if (want[i] == nil) != (r.Err == nil) || (want[i] != nil && !errors.Is(r.Err, want[i])) {
				t.Errorf("booking %s: err %v, want %v", bs[i].ID, r.Err, want[i])
			}
			if sold := want[i] == nil; sold != (r.Msg.ID != 0) || (sold && r.Msg.Event.(*contracts.EventBooked).ID != bs[i].ID) {
				t.Errorf("booking %s: message %d %v", bs[i].ID, r.Msg.ID, r.Msg.Event)
			}
		}
		checkBookings(t, s, "ev", bs[0], bs[2])
		if ev, err := s.Show(ctx, "ev"); err != nil || ev.Booked != 5 {
			t.Fatalf("event: %+v, %v; want 5 booked", ev, err)
		}
		if n := servicetest.Unsent(t, s.Outbox()); n != 2 {
			t.Fatalf("%d unsent, want 2", n)
		}
		// The next group marks them sent, even with nothing to sell.
		if _, err := s.BookMany(ctx, nil, []int64{res[0].Msg.ID, res[2].Msg.ID}); err != nil {
			t.Fatal(err)
		}
		if n := servicetest.Unsent(t, s.Outbox()); n != 0 {
			t.Fatalf("%d unsent after the marks, want 0", n)
		}
	})
}

// TestFailedGroupStoresNothing: a statement that fails fails the whole
// group: no booking, no seat, no outbox row and no mark of it is written.
func TestFailedGroupStoresNothing(t *testing.T) {
	sqlBackends(t, func(t *testing.T, s *SQLStore) {
		ctx := context.Background()
		saveShow(t, s, "ev", 5)
		x := Booking{ID: "x", ShowID: "ev", UserID: "u", Seats: 1, Date: time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)}
		first, err := s.Book(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		// The same ID twice breaks the primary key of bookings.
		dup := []Booking{{ID: "a", ShowID: "ev", UserID: "u", Seats: 1}, {ID: "a", ShowID: "ev", UserID: "u", Seats: 1}}
		if _, err := s.BookMany(ctx, dup, []int64{first.ID}); err == nil {
			t.Fatal("a group with a broken statement succeeded")
		}
		checkBookings(t, s, "ev", x)
		if ev, err := s.Show(ctx, "ev"); err != nil || ev.Booked != 1 {
			t.Fatalf("event: %+v, %v; want 1 booked", ev, err)
		}
		if n := servicetest.Unsent(t, s.Outbox()); n != 1 {
			t.Fatalf("%d unsent, want 1: the mark went with the failed group", n)
		}
	})
}

// countingStore counts the event.booked that reach the store.
type countingStore struct {
	*SQLStore
	applies atomic.Int64
}

func (c *countingStore) ApplyBooking(ctx context.Context, b Booking) (bool, error) {
	c.applies.Add(1)
	return c.SQLStore.ApplyBooking(ctx, b)
}

// TestOwnEventBookedCostsNoWrite: the service's own event.booked, heard
// back, does not go to the store (it is there already); a second delivery
// of it does, and changes nothing. With Group 1 every one goes to the
// store, as before.
func TestOwnEventBookedCostsNoWrite(t *testing.T) {
	for _, tc := range []struct {
		group     int
		wantFirst int64
	}{{0, 0}, {1, 3}} {
		t.Run(fmt.Sprint("group-", tc.group), func(t *testing.T) {
			t.Parallel()
			sql, err := OpenStore(context.Background(), servicetest.SQLiteDSN(t))
			if err != nil {
				t.Fatal(err)
			}
			store := &countingStore{SQLStore: sql.(*SQLStore)}
			em := &servicetest.Emitter{}
			svc, err := New(store, em, Options{Logger: quiet(), Outbox: servicetest.FastOutbox(), Group: tc.group})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { svc.Close(); store.Close() })
			ctx := context.Background()
			saveShow(t, store, "ev", 10)
			srv := servicetest.Serve(t, svc)
			for i := range 3 {
				srv.JSON("POST", "/events/ev/bookings", fmt.Sprintf(`{"seats":2,"user_id":"u%d"}`, i), 201, nil)
			}
			var evs []contracts.Event
			brokertest.Eventually(t, 5*time.Second, func() error {
				if evs = em.Emitted(); len(evs) != 3 {
					return fmt.Errorf("%d emitted", len(evs))
				}
				return nil
			})
			for round, want := range []int64{tc.wantFirst, tc.wantFirst + 3} {
				for _, ev := range evs {
					if err := svc.Handle(ctx, ev); err != nil {
						t.Fatal(err)
					}
				}
				if got := store.applies.Load(); got != want {
					t.Errorf("delivery %d: %d event.booked reached the store, want %d", round+1, got, want)
				}
				if ev, err := store.Show(ctx, "ev"); err != nil || ev.Booked != 6 {
					t.Fatalf("delivery %d: %+v, %v; want 6 booked", round+1, ev, err)
				}
			}
		})
	}
}

// TestApplyBookingsOnce: ApplyBookings applies each booking of a window
// once, whether it was stored before or comes twice in the window, and a
// window with a booking the store refuses applies none of them. The SQL
// stores (one transaction) and the memory store (one lock).
func TestApplyBookingsOnce(t *testing.T) {
	sqlBackends(t, func(t *testing.T, s *SQLStore) {
		applyBookingsOnce(t, s, func() {
			if _, err := s.db.ExecContext(context.Background(), `UPDATE booking_events SET booked = $1 WHERE id = 'full'`, int64(math.MaxInt64)); err != nil {
				t.Fatal(err)
			}
		})
	})
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		s := NewMemoryStore()
		applyBookingsOnce(t, s, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			ev, ok := s.events["full"]
			if !ok {
				t.Fatal(`booking f on the unknown show "full" was not kept on a placeholder: a booking can come before its event.created`)
			}
			ev.Booked = math.MaxInt
		})
	})
}

// applyBookingsOnce is TestApplyBookingsOnce on one store; fill sets the
// count of the show "full" to the largest there is.
func applyBookingsOnce(t *testing.T, s interface {
	Store
	BatchApplier
}, fill func()) {
	ctx := context.Background()
	saveShow(t, s, "ev", 10)
	at := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	b := func(id, show string, seats int) Booking {
		return Booking{ID: id, ShowID: show, UserID: "u", Seats: seats, Date: at}
	}
	if _, err := s.ApplyBooking(ctx, b("old", "ev", 1)); err != nil {
		t.Fatal(err)
	}
	got, err := s.ApplyBookings(ctx, []Booking{b("a", "ev", 2), b("old", "ev", 1), b("a", "ev", 2), b("c", "later", 3), b("d", "ev", 1)})
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{true, false, false, true, true}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ApplyBookings = %v, want %v", got, want)
	}
	checkBooked(t, s, "ev", 4) // old, a, d
	saveShow(t, s, "later", 10)
	checkBooked(t, s, "later", 3) // counted on the placeholder

	// A count that would overflow fails the window: nothing of it is
	// stored, and each booking goes to ApplyBooking alone.
	if _, err := s.ApplyBookings(ctx, []Booking{b("e", "ev", 1), b("f", "full", 1)}); err != nil {
		t.Fatal(err)
	}
	fill()
	_, err = s.ApplyBookings(ctx, []Booking{b("g", "ev", 1), b("h", "full", 1)})
	if !errors.Is(err, contracts.ErrInvalid) {
		t.Errorf("ApplyBookings over a full count: %v, want contracts.ErrInvalid", err)
	}
	checkBooked(t, s, "ev", 5)                                                                      // e, not g
	checkBookings(t, s, "ev", b("a", "ev", 2), b("d", "ev", 1), b("e", "ev", 1), b("old", "ev", 1)) // by date, then ID
	// g was taken back: applied alone now, it counts.
	if ok, err := s.ApplyBooking(ctx, b("g", "ev", 1)); err != nil || !ok {
		t.Errorf("ApplyBooking(g) after the failed window = %v, %v; want it applied", ok, err)
	}
	checkBooked(t, s, "ev", 6)
}

// saveShow stores a show with this id and capacity in s, or fails the test.
func saveShow(t testing.TB, s interface {
	SaveShow(context.Context, Show) error
}, id string, capacity int) {
	t.Helper()
	if err := s.SaveShow(context.Background(), Show{ID: id, Name: "Show " + id, LocationID: "loc", Hall: "Main", Capacity: capacity}); err != nil {
		t.Fatal(err)
	}
}
