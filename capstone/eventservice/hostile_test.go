package eventservice

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"

	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/msgqueuetest"
	"example.com/myevents/contracts"
)

// TestHostileInputWritesNothing sends what a hostile client would, on every
// store: capacities outside 1..1,000,000, NULs and invalid UTF-8 in text
// and IDs, text too long for an index, dates no column or JSON encoder can
// hold. Each is a 400 that writes nothing and emits nothing.
func TestHostileInputWritesNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		loc, before := f.sentLocation(t)

		location := func(name, halls string) string {
			return fmt.Sprintf(`{"name":%s,"halls":%s}`, name, halls)
		}
		manyHalls := make([]string, contracts.MaxHalls+1)
		for i := range manyHalls {
			manyHalls[i] = fmt.Sprintf(`{"name":"h%d","capacity":1}`, i)
		}
		long := strings.Repeat("x", contracts.MaxTextBytes+1)
		for _, tc := range []struct {
			name, method, path, body, part string
		}{
			{"capacity 0", "POST", "/locations", location(`"x"`, `[{"name":"A","capacity":0}]`), "capacity must be at least 1"},
			{"capacity 2^63-1", "POST", "/locations", location(`"x"`, `[{"name":"A","capacity":9223372036854775807}]`), "at most 1000000"},
			{"capacity 3e9", "POST", "/locations", location(`"x"`, `[{"name":"A","capacity":3000000000}]`), "at most 1000000"},
			{"101 halls", "POST", "/locations", location(`"x"`, "["+strings.Join(manyHalls, ",")+"]"), "at most 100 halls"},
			{"NUL in name", "POST", "/locations", location(`"a\u0000b"`, `[]`), "control character"},
			{"NUL in hall", "POST", "/locations", location(`"x"`, `[{"name":"\u0000","capacity":1}]`), "control character"},
			{"invalid UTF-8 in address", "POST", "/locations", "{\"name\":\"x\",\"address\":\"\xff\"}", "not valid UTF-8"},
			{"long name", "POST", "/locations", location(`"`+long+`"`, `[]`), "name is 201 bytes"},
			{"NUL location id", "POST", "/events", `{"name":"x","location_id":"\u0000","hall":"Main","start_date":1,"end_date":2}`, "control character"},
			{"NUL event name", "POST", "/events", strings.Replace(event(loc.ID, ""), `"Aida"`, `"\u0000"`, 1), "control character"},
			{"long event name", "POST", "/events", strings.Replace(event(loc.ID, ""), `"Aida"`, `"`+long+`"`, 1), "name is 201 bytes"},
			{"start in year 292277026596", "POST", "/events", fmt.Sprintf(`{"name":"x","location_id":%q,"hall":"Main","start_date":9223372036854775807,"end_date":9223372036854775807}`, loc.ID), "start_date must be"},
			{"end after year 9999", "POST", "/events", fmt.Sprintf(`{"name":"x","location_id":%q,"hall":"Main","start_date":1,"end_date":253402300800}`, loc.ID), "end_date must be"},
			{"NUL location id, GET", "GET", "/locations/%00", "", "location id holds a control character"},
			{"NUL event id, GET", "GET", "/events/%00", "", "event id holds a control character"},
			{"NUL event name, GET", "GET", "/events/name/%00", "", "name holds a control character"},
			{"invalid UTF-8 event name, GET", "GET", "/events/name/%FF", "", "name is not valid UTF-8"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				f.srv.WantError(tc.method, tc.path, tc.body, 400, tc.part)
				if after := f.snapshot(t); after != before {
					t.Errorf("the request wrote something: before %+v, after %+v", before, after)
				}
			})
		}

		// Valid text whose event would not fit a broker message: a JSON
		// encoder writes each "<" as six bytes.
		bulky := make([]string, contracts.MaxHalls)
		for i := range bulky {
			bulky[i] = fmt.Sprintf(`{"name":"%03d%s","capacity":1}`, i, strings.Repeat("<", contracts.MaxTextBytes-3))
		}
		f.srv.WantError("POST", "/locations", location(`"x"`, "["+strings.Join(bulky, ",")+"]"), 400, "too large to announce")
		if after := f.snapshot(t); after != before {
			t.Errorf("the bulky location wrote something: before %+v, after %+v", before, after)
		}

		// The borders pass: 100 halls, a hall of 1,000,000, the last second
		// of year 9999.
		halls := strings.Join(manyHalls[:contracts.MaxHalls-1], ",") + `,{"name":"Main","capacity":1000000}`
		var big Location
		f.srv.JSON("POST", "/locations", location(`"Big"`, "["+halls+"]"), 201, &big)
		f.srv.JSON("POST", "/events", fmt.Sprintf(`{"name":"Late","location_id":%q,"hall":"Main","start_date":253402300799,"end_date":253402300799}`, big.ID), 201, nil)
		f.waitSent(t, 3)
	})
}

// TestStoresEnforceLimits: every store refuses on its own what breaks the
// limits of package contracts, whoever calls it.
func TestStoresEnforceLimits(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		if _, err := f.store.AddLocation(ctx, Location{ID: "l", Name: "x", Halls: []Hall{{Name: "A", Capacity: 0}}}); !errors.Is(err, contracts.ErrInvalid) {
			t.Errorf("AddLocation with a hall of capacity 0 = %v, want ErrInvalid", err)
		}
		if _, err := f.store.AddLocation(ctx, Location{ID: "l\x00", Name: "x"}); !errors.Is(err, contracts.ErrInvalid) {
			t.Errorf("AddLocation with a NUL in its ID = %v, want ErrInvalid", err)
		}
		if _, err := f.store.AddLocation(ctx, Location{ID: "l", Name: "x", Halls: []Hall{{Name: "A", Capacity: 5}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.store.AddEvent(ctx, Event{ID: "e", Name: "x", LocationID: "l", Hall: "A", Capacity: contracts.MaxCapacity + 1}); !errors.Is(err, contracts.ErrInvalid) {
			t.Errorf("AddEvent with capacity %d = %v, want ErrInvalid", contracts.MaxCapacity+1, err)
		}
	})
}

// TestAnEventThatFitsOnlyWithoutItsKeyIsRefused: a Kafka listener counts
// a record's key with its value, so an event whose envelope is exactly
// msgqueue.MaxMessageSize, with a key of an ID's length (rand.Text: 26
// characters), could be stored and emitted but never applied: it must be
// refused before it is stored.
func TestAnEventThatFitsOnlyWithoutItsKeyIsRefused(t *testing.T) {
	loc, err := msgqueuetest.LocationAtTheLimit(rand.Text())
	if err != nil {
		t.Fatal(err)
	}
	if err := fitsAMessage(loc); !errors.Is(err, msgqueue.ErrTooLarge) {
		t.Errorf("fitsAMessage of a %d-byte envelope with a %d-byte key = %v, want ErrTooLarge",
			msgqueue.MaxMessageSize, len(loc.ID), err)
	}
}

// TestAStoredHallTheLimitsRefuseIsNo500: a row stored before today's
// limits (a hall of 0 seats, written by an older version or by hand)
// makes an event the store refuses. The client sent nothing wrong, and
// gets a 422 that says what is wrong with the location, not a 500.
func TestAStoredHallTheLimitsRefuseIsNo500(t *testing.T) {
	f := newFixture(t, servicetest.SQLiteDSN(t), Options{})
	var loc Location
	f.srv.JSON("POST", "/locations", `{"name":"Old hall","halls":[{"name":"Main","capacity":10}]}`, 201, &loc)
	if _, err := f.store.(*SQLStore).db.ExecContext(context.Background(),
		`UPDATE location_halls SET capacity = 0 WHERE location_id = $1`, loc.ID); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"name":"Gig","location_id":%q,"hall":"Main","start_date":1,"end_date":2}`, loc.ID)
	f.srv.WantError("POST", "/events", body, 422, "capacity must be at least 1")
}
