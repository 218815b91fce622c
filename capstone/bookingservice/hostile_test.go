package bookingservice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/labtest"
)

// TestHostileBookings sends what a hostile client would, on every store:
// seat counts that overflow an int64 or a 32-bit column, IDs with a NUL,
// user IDs that are too long or not clean UTF-8. Each is a 400 that writes
// nothing, and afterwards the event still sells exactly its capacity.
func TestHostileBookings(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		before := f.bookedOnce(t, 10, 1)

		long := strings.Repeat("u", contracts.MaxIDBytes+1)
		for _, tc := range []struct {
			name, method, path, body string
			part                     string
		}{
			{"seats 2^63-1", "POST", "/events/ev/bookings", `{"seats":9223372036854775807,"user_id":"u"}`, "at most 1000"},
			{"seats 3e9", "POST", "/events/ev/bookings", `{"seats":3000000000,"user_id":"u"}`, "at most 1000"},
			{"seats 2^31-1", "POST", "/events/ev/bookings", `{"seats":2147483647,"user_id":"u"}`, "at most 1000"},
			{"seats 1001", "POST", "/events/ev/bookings", `{"seats":1001,"user_id":"u"}`, "at most 1000"},
			{"user_id 201 bytes", "POST", "/events/ev/bookings", `{"seats":1,"user_id":"` + long + `"}`, "user_id is 201 bytes"},
			{"NUL in user_id", "POST", "/events/ev/bookings", `{"seats":1,"user_id":"a\u0000b"}`, "control character"},
			{"null body", "POST", "/events/ev/bookings", `null`, "invalid JSON body: want a JSON object, got null"},
			{"right-to-left override in user_id", "POST", "/events/ev/bookings", `{"seats":1,"user_id":"mallory\u202eecila"}`, "user_id holds a bidirectional control character (U+202E)"},
			{"lone surrogate in user_id", "POST", "/events/ev/bookings", `{"seats":1,"user_id":"\udc00"}`, "U+FFFD"},
			{"invalid UTF-8 in user_id", "POST", "/events/ev/bookings", "{\"seats\":1,\"user_id\":\"a\xffb\"}", "not valid UTF-8"},
			{"NUL event id, booking", "POST", "/events/%00/bookings", `{"seats":1,"user_id":"u"}`, "event id holds a control character"},
			{"NUL event id, view", "GET", "/events/%00", "", "event id holds a control character"},
			{"NUL event id, bookings", "GET", "/events/%00/bookings", "", "event id holds a control character"},
			{"invalid UTF-8 event id", "GET", "/events/%FF", "", "event id is not valid UTF-8"},
			{"long event id", "GET", "/events/" + long, "", "event id is 201 bytes"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				f.srv.WantError(tc.method, tc.path, tc.body, 400, tc.part)
				if after := f.snapshot(t, "ev"); after != before {
					t.Errorf("the request wrote something: before %+v, after %+v", before, after)
				}
			})
		}

		// What a wrapped count would have let through is refused.
		for range 3 {
			f.srv.WantError("POST", "/events/ev/bookings", `{"seats":500,"user_id":"u"}`, 409, "not enough seats")
		}
		f.srv.JSON("POST", "/events/ev/bookings", `{"seats":9,"user_id":"last"}`, 201, nil)
		f.srv.WantError("POST", "/events/ev/bookings", `{"seats":1,"user_id":"u"}`, 409, "not enough seats")
		if v := f.view(t, "ev"); v["booked"] != 10.0 || v["available"] != 0.0 {
			t.Errorf("view %v, want 10 booked and 0 available", v)
		}
	})
}

// TestStoresEnforceLimits: every store refuses, on its own, what breaks the
// limits, whoever calls it, and an event stays readable afterwards (a
// SQLite count that overflowed used to turn into a float for good).
func TestStoresEnforceLimits(t *testing.T) {
	servicetest.ForEachStore(t, OpenStore, func(t *testing.T, s Store) {
		ctx := context.Background()
		ev := Show{ID: "ev", Name: "Gig", LocationID: "loc", Hall: "Main", Capacity: 10}
		if err := s.SaveShow(ctx, ev); err != nil {
			t.Fatal(err)
		}
		for _, bad := range []Show{
			{ID: "zero", LocationID: "loc", Hall: "Main", Capacity: 0},
			{ID: "huge", LocationID: "loc", Hall: "Main", Capacity: math.MaxInt64},
			{ID: "nul\x00", LocationID: "loc", Hall: "Main", Capacity: 1},
		} {
			if err := s.SaveShow(ctx, bad); !errors.Is(err, contracts.ErrInvalid) {
				t.Errorf("SaveEvent(%q, capacity %d) = %v, want ErrInvalid", bad.ID, bad.Capacity, err)
			}
		}
		if err := s.SaveLocation(ctx, Location{ID: "l\x00"}); !errors.Is(err, contracts.ErrInvalid) {
			t.Errorf("SaveLocation with a NUL in its ID = %v, want ErrInvalid", err)
		}
		for i, seats := range []int{math.MaxInt64, math.MaxInt32 + 1, contracts.MaxSeats + 1, 0, -1} {
			b := Booking{ID: fmt.Sprintf("b%d", i), ShowID: "ev", UserID: "u", Seats: seats}
			if _, err := s.ApplyBooking(ctx, b); !errors.Is(err, contracts.ErrInvalid) {
				t.Errorf("ApplyBooking(%d seats) = %v, want ErrInvalid", seats, err)
			}
			if _, err := s.Book(ctx, b); !errors.Is(err, contracts.ErrInvalid) {
				t.Errorf("Book(%d seats) = %v, want ErrInvalid", seats, err)
			}
		}
		if _, err := s.Book(ctx, Booking{ID: "nul", ShowID: "ev", UserID: "u\x00", Seats: 1}); !errors.Is(err, contracts.ErrInvalid) {
			t.Errorf("Book with a NUL in user_id = %v, want ErrInvalid", err)
		}
		if applied, err := s.ApplyBooking(ctx, Booking{ID: "ok", ShowID: "ev", UserID: "u", Seats: contracts.MaxSeats}); err != nil || !applied {
			t.Fatalf("ApplyBooking(%d seats) = %v, %v", contracts.MaxSeats, applied, err)
		}
		got, err := s.Show(ctx, "ev")
		if err != nil || got.Booked != contracts.MaxSeats {
			t.Fatalf("Event = %+v, %v; want %d booked", got, err, contracts.MaxSeats)
		}
		if _, err := s.Book(ctx, Booking{ID: "one", ShowID: "ev", UserID: "u", Seats: 1}); !errors.Is(err, ErrSoldOut) {
			t.Errorf("Book on an overbooked event = %v, want ErrSoldOut", err)
		}
	})
}

// refusingStore is a store whose ApplyBooking fails the way a store refuses
// bad data.
type refusingStore struct {
	*MemoryStore
	err error
}

func (s refusingStore) ApplyBooking(context.Context, Booking) (bool, error) { return false, s.err }

// TestHandleMakesDataErrorsPermanent: an event the store refuses as invalid
// data is dead-lettered at once (a permanent error), never retried; an
// outage stays an ordinary error, retried.
func TestHandleMakesDataErrorsPermanent(t *testing.T) {
	ev := &contracts.EventBooked{ID: "b", EventID: "e", UserID: "u", Seats: 1}
	for _, tc := range []struct {
		err       error
		permanent bool
	}{
		{fmt.Errorf("storing booking b: %w", contracts.ErrInvalid), true},
		{errors.New("connection refused"), false},
	} {
		svc, err := New(refusingStore{NewMemoryStore(), tc.err}, &servicetest.Emitter{}, Options{Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		got := svc.Handle(context.Background(), ev)
		if got == nil || msgqueue.IsPermanent(got) != tc.permanent {
			t.Errorf("Handle with the store failing %q = %v, want permanent=%v", tc.err, got, tc.permanent)
		}
		svc.Close()
	}
}

// TestClientThatGaveUpIsNotAnError: a client that hangs up, or whose own
// timeout passes, while the store works ends its request's context, and
// the store's call fails with it. SQLite and PostgreSQL answered that
// with a 500 and an ERROR in the log; it is the client's doing: a 499
// for the logs, at info level, on every store.
func TestClientThatGaveUpIsNotAnError(t *testing.T) {
	for _, b := range servicetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			logged := &labtest.Buffer{}
			f := newFixture(t, b.DSN, nil, Options{Logger: slog.New(slog.NewTextHandler(logged, nil))})
			f.announce(t, "gone", 10)
			gone, cancel := context.WithCancel(context.Background())
			cancel()
			for _, path := range []string{"/events/gone", "/events/gone/bookings"} {
				rec := httptest.NewRecorder()
				f.svc.ServeHTTP(rec, httptest.NewRequest("GET", path, nil).WithContext(gone))
				if rec.Code == http.StatusInternalServerError {
					t.Errorf("GET %s whose client gave up answered 500 %s", path, rec.Body)
				}
			}
			if strings.Contains(logged.String(), "level=ERROR") {
				t.Errorf("a client that gave up was logged as an error:\n%s", logged)
			}
		})
	}
}
