package bookingservice

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"testing"
	"time"

	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/contracts"
)

// TestStore runs one specification against the memory, SQLite and
// PostgreSQL stores.
func TestStore(t *testing.T) {
	servicetest.ForEachStore(t, OpenStore, storeSpec)
}

func storeSpec(t *testing.T, s Store) {
	ctx := context.Background()
	hasOutbox := s.Outbox() != nil
	at := time.Date(2026, 11, 27, 20, 0, 0, 0, time.UTC)
	booking := func(id, event string, seats int, minute int) Booking {
		return Booking{ID: id, ShowID: event, UserID: "user-" + id, Seats: seats, Date: at.Add(time.Duration(minute) * time.Minute)}
	}

	// An empty store knows nothing and sells nothing.
	servicetest.WantIs(t, ErrNotFound, map[string]error{
		"Event":                    servicetest.Err(s.Show(ctx, "ev")),
		"Bookings":                 servicetest.Err(s.Bookings(ctx, "ev")),
		"Location":                 servicetest.Err(s.Location(ctx, "loc")),
		"Book on an unknown event": servicetest.Err(s.Book(ctx, booking("b0", "ev", 1, 0))),
	})

	// Saving is insert-if-absent: the first copy wins.
	loc := Location{ID: "loc", Name: "Arena", Address: "Street 1", Country: "NL", OpenTime: 9, CloseTime: 22,
		Halls: []contracts.Hall{{Name: "Main", Capacity: 5}, {Name: "Side", Capacity: 2}}}
	ev := Show{ID: "ev", Name: "Aida", LocationID: "loc", Hall: "Main", Capacity: 5, StartDate: at, EndDate: at.Add(time.Hour)}
	for range 2 {
		if err := s.SaveLocation(ctx, loc); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveShow(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	changed := ev
	changed.Name, changed.Capacity = "Changed", 500
	if err := s.SaveShow(ctx, changed); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Location(ctx, "loc"); err != nil || !reflect.DeepEqual(got, loc) {
		t.Errorf("Location = %+v, %v; want %+v", got, err, loc)
	}
	checkShow(t, s, ev, 0)

	// Book sells what is left and refuses the rest, writing nothing.
	b1 := booking("b1", "ev", 2, 1)
	msg, err := s.Book(ctx, b1)
	if err != nil {
		t.Fatal(err)
	}
	if want := eventBooked(b1); !reflect.DeepEqual(msg.Event, contracts.Event(want)) {
		t.Errorf("Book prepared %+v, want %+v", msg.Event, want)
	}
	if hasOutbox != (msg.ID != 0) || hasOutbox == (msg.Undo != nil) {
		t.Errorf("Book message ID %d, Undo %v, for a store with outbox=%v", msg.ID, msg.Undo != nil, hasOutbox)
	}
	unsentBefore := servicetest.Unsent(t, s.Outbox())
	if _, err := s.Book(ctx, booking("b2", "ev", 4, 2)); !errors.Is(err, ErrSoldOut) {
		t.Errorf("Book 4 of 3 left = %v, want ErrSoldOut", err)
	}
	if servicetest.Unsent(t, s.Outbox()) != unsentBefore {
		t.Error("a refused booking wrote an outbox message")
	}
	checkShow(t, s, ev, 2)
	b3 := booking("b3", "ev", 3, 3)
	if _, err := s.Book(ctx, b3); err != nil {
		t.Fatalf("Book the last 3: %v", err)
	}
	if _, err := s.Book(ctx, booking("b4", "ev", 1, 4)); !errors.Is(err, ErrSoldOut) {
		t.Errorf("Book on a full event = %v, want ErrSoldOut", err)
	}
	checkShow(t, s, ev, 5)
	checkBookings(t, s, "ev", b1, b3)

	// Hearing our own event.booked back changes nothing.
	if applied, err := s.ApplyBooking(ctx, b1); err != nil || applied {
		t.Errorf("ApplyBooking(own b1) = %v, %v; want false", applied, err)
	}
	checkShow(t, s, ev, 5)

	// A booking sold by another instance counts, once, even beyond the
	// capacity: those seats are sold already.
	b9 := booking("b9", "ev", 2, 0)
	for i, want := range []bool{true, false} {
		if applied, err := s.ApplyBooking(ctx, b9); err != nil || applied != want {
			t.Errorf("ApplyBooking(b9) #%d = %v, %v; want %v", i+1, applied, err, want)
		}
	}
	checkShow(t, s, ev, 7)
	checkBookings(t, s, "ev", b9, b1, b3)

	// A booking heard before its event is kept on a placeholder, which is
	// not an event yet, and counted when event.created arrives.
	early := booking("early", "later", 3, 5)
	if applied, err := s.ApplyBooking(ctx, early); err != nil || !applied {
		t.Fatalf("ApplyBooking(early) = %v, %v", applied, err)
	}
	servicetest.WantIs(t, ErrNotFound, map[string]error{
		"Event(placeholder)":    servicetest.Err(s.Show(ctx, "later")),
		"Bookings(placeholder)": servicetest.Err(s.Bookings(ctx, "later")),
		"Book on a placeholder": servicetest.Err(s.Book(ctx, booking("b5", "later", 1, 6))),
	})
	later := Show{ID: "later", Name: "Tosca", LocationID: "loc", Hall: "Side", Capacity: 10, StartDate: at, EndDate: at}
	if err := s.SaveShow(ctx, later); err != nil {
		t.Fatal(err)
	}
	checkShow(t, s, later, 3)
	checkBookings(t, s, "later", early) // the placeholder's booking is the event's
	b6 := booking("b6", "later", 7, 7)
	if _, err := s.Book(ctx, b6); err != nil {
		t.Errorf("Book the 7 seats left: %v", err)
	}
	checkBookings(t, s, "later", early, b6)
	if _, err := s.Book(ctx, booking("b7", "later", 1, 8)); !errors.Is(err, ErrSoldOut) {
		t.Errorf("Book beyond 3+7 of 10 = %v, want ErrSoldOut", err)
	}

	// A store keeps a booking's date to the microsecond, as every store
	// does: bookings of the same microsecond are listed by ID, whatever
	// nanoseconds the broker's event.booked carried.
	sub := Show{ID: "sub", Name: "Carmen", LocationID: "loc", Hall: "Main", Capacity: 5, StartDate: at, EndDate: at}
	if err := s.SaveShow(ctx, sub); err != nil {
		t.Fatal(err)
	}
	late, soon := booking("A", "sub", 1, 0), booking("B", "sub", 1, 0)
	late.Date, soon.Date = at.Add(900*time.Nanosecond), at.Add(100*time.Nanosecond)
	for _, b := range []Booking{late, soon} {
		if _, err := s.ApplyBooking(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	late.Date, soon.Date = at, at
	checkBookings(t, s, "sub", late, soon)

	if hasOutbox {
		if n := servicetest.Unsent(t, s.Outbox()); n != 3 {
			t.Errorf("%d unsent messages, want 3 (b1, b3, b6)", n)
		}
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

// checkEvent requires the store's copy of want with booked seats booked.
func checkShow(t *testing.T, s Store, want Show, booked int) {
	t.Helper()
	want.Booked = booked
	got, err := s.Show(context.Background(), want.ID)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Event(%s) = %+v, %v; want %+v", want.ID, got, err, want)
	}
}

// checkBookings requires exactly want, in order.
func checkBookings(t *testing.T, s Store, showID string, want ...Booking) {
	t.Helper()
	got, err := s.Bookings(context.Background(), showID)
	if err != nil || len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(got, want)) {
		t.Errorf("Bookings(%s) = %+v, %v; want %+v", showID, got, err, want)
	}
}

func TestMemoryUndoGivesTheSeatsBack(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore()
	ev := Show{ID: "ev", Name: "E", LocationID: "loc", Hall: "Main", Capacity: 3}
	if err := s.SaveShow(ctx, ev); err != nil {
		t.Fatal(err)
	}
	msg, err := s.Book(ctx, Booking{ID: "b", ShowID: "ev", UserID: "u", Seats: 3})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // undoing twice is harmless
		if err := msg.Undo(ctx); err != nil {
			t.Fatal(err)
		}
	}
	checkShow(t, s, ev, 0)
	checkBookings(t, s, "ev")
}

// TestMemoryUndoOfOneAmongMany: undoing one booking in the middle of a
// show's many takes back that one only, its seats and its place, and
// leaves the others.
func TestMemoryUndoOfOneAmongMany(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore()
	ev := Show{ID: "ev", Name: "E", LocationID: "loc", Hall: "Main", Capacity: 100}
	if err := s.SaveShow(ctx, ev); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	var want []Booking
	var undo func(context.Context) error
	for i := range 30 {
		b := Booking{ID: fmt.Sprintf("b%02d", i), ShowID: "ev", UserID: "u", Seats: 2, Date: at}
		msg, err := s.Book(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		if i == 12 { // in the middle
			undo = msg.Undo
			continue
		}
		want = append(want, b)
	}
	if err := undo(ctx); err != nil {
		t.Fatal(err)
	}
	checkShow(t, s, ev, 2*29)
	checkBookings(t, s, "ev", want...)
	// Its ID is free again.
	if _, err := s.Book(ctx, Booking{ID: "b12", ShowID: "ev", UserID: "u", Seats: 1, Date: at}); err != nil {
		t.Errorf("booking b12 again after its undo: %v", err)
	}
}

func TestOpenStoreRejectsUnknownDSN(t *testing.T) {
	s, err := OpenStore(context.Background(), "sqlserver://sa@db")
	if err == nil || s != nil {
		t.Fatalf("OpenStore(sqlserver) = %v, %v; want nil and an error", s, err)
	}
}

// TestMemoryUndoKeepsNothing: while the broker refuses every event.booked
// (Kafka down, clients retrying), each booking is stored and taken back
// by its Undo. The store must give back what those bookings took, or an
// outage makes it grow for as long as it lasts. One booking taken back
// below a live one is kept until those after it go too.
func TestMemoryUndoKeepsNothing(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore()
	if err := s.SaveShow(ctx, Show{ID: "ev", Name: "E", LocationID: "loc", Hall: "Main", Capacity: 10}); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	book := func(id string) func(context.Context) error {
		t.Helper()
		msg, err := s.Book(ctx, Booking{ID: id, ShowID: "ev", UserID: "some-user", Seats: 1, Date: at})
		if err != nil {
			t.Fatal(err)
		}
		return msg.Undo
	}
	undo := func(f func(context.Context) error) {
		t.Helper()
		if err := f(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 * recBlock { // past a block of records
		undo(book(fmt.Sprintf("refused-%06d", i)))
	}
	text := 0
	for _, b := range s.bookings.text {
		text += len(b)
	}
	if n, blocks := s.bookings.n, len(s.bookings.text); n != 0 || text != 0 || blocks > 1 || len(s.bookings.recs) > 1 {
		t.Errorf("%d bookings booked and taken back left %d records, %d bytes of text in %d blocks and %d blocks of records; want none, and one spare block of each at most",
			3*recBlock, n, text, blocks, len(s.bookings.recs))
	}
	// Booking and taking back where a block starts reuses the spare
	// blocks: it must not allocate and clear a block of records (128 KiB)
	// and one of text (64 KiB) each time, as it did.
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range 1000 {
		undo(book(fmt.Sprintf("again-%06d", i)))
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / 1000; per > 4<<10 {
		t.Errorf("booking and taking back allocates %d bytes each time; want a few hundred", per)
	}
	first := book("first")
	second := book("second")
	undo(first) // below a live booking: kept for now
	undo(second)
	if n := s.bookings.n; n != 0 {
		t.Errorf("two bookings taken back, the first one first, left %d records; want none", n)
	}
	undo(book("again")) // the table still works
	checkShow(t, s, Show{ID: "ev", Name: "E", LocationID: "loc", Hall: "Main", Capacity: 10}, 0)
	checkBookings(t, s, "ev")
}

// TestBookingsInByteOrderWhateverTheCollation: bookings of the same
// microsecond are listed by ID in byte order on every store, also on a
// PostgreSQL whose text sorts by a language's rules (a database created
// with an ICU locale, as many are): there "a" sorts before "B", and a
// memory or SQLite BookingService listed the same bookings the other way.
func TestBookingsInByteOrderWhateverTheCollation(t *testing.T) {
	ctx := context.Background()
	s, err := OpenStore(ctx, servicetest.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The column as a database created with an ICU locale makes it.
	db := s.(*SQLStore).db
	var icu int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_collation WHERE collname = 'en-US-x-icu'`).Scan(&icu); err != nil {
		t.Fatal(err)
	}
	if icu == 0 {
		t.Skip("this PostgreSQL was built without ICU: it has no collation en-US-x-icu to sort by")
	}
	if _, err := db.ExecContext(ctx, `ALTER TABLE bookings ALTER COLUMN id TYPE TEXT COLLATE "en-US-x-icu"`); err != nil {
		t.Fatalf("giving the bookings' IDs an ICU collation: %v", err)
	}
	at := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	show := Show{ID: "ev", Name: "Aida", LocationID: "loc", Hall: "Main", Capacity: 5, StartDate: at, EndDate: at}
	if err := s.SaveShow(ctx, show); err != nil {
		t.Fatal(err)
	}
	lower := Booking{ID: "a", ShowID: "ev", UserID: "u", Seats: 1, Date: at}
	upper := Booking{ID: "B", ShowID: "ev", UserID: "u", Seats: 1, Date: at}
	for _, b := range []Booking{lower, upper} {
		if _, err := s.ApplyBooking(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	checkBookings(t, s, "ev", upper, lower)
}

// TestMemoryUndoBelowLiveBookingsKeepsLittle: in a partial outage (the
// broker refuses the bookings of some events and takes the others) a
// refused booking is taken back while bookings stored after it stay. The
// store must not keep what the refused ones took for ever: it keeps no
// more of it than the live bookings take, and the rest reads as before.
func TestMemoryUndoBelowLiveBookingsKeepsLittle(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore()
	show := Show{ID: "ev", Name: "E", LocationID: "loc", Hall: "Main", Capacity: contracts.MaxCapacity}
	if err := s.SaveShow(ctx, show); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	var (
		pending []func(context.Context) error // undos not run yet, oldest first
		live    []Booking
	)
	for i := range 60_000 {
		b := Booking{ID: fmt.Sprintf("b-%06d", i), ShowID: "ev", UserID: "u", Seats: 1, Date: at.Add(time.Duration(i) * time.Second)}
		msg, err := s.Book(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 { // the broker took this one
			live = append(live, b)
			continue
		}
		pending = append(pending, msg.Undo)
		if len(pending) > 50 { // refused a little later, after others were stored
			if err := pending[0](ctx); err != nil {
				t.Fatal(err)
			}
			pending = pending[1:]
		}
	}
	for _, undo := range pending {
		if err := undo(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if kept := s.bookings.n - len(live); kept > max(len(live), recBlock) {
		t.Errorf("%d refused bookings taken back below %d live ones left %d records; want at most %d",
			60_000-len(live), len(live), kept, max(len(live), recBlock))
	}
	checkShow(t, s, show, len(live))
	checkBookings(t, s, "ev", live...)
	for _, b := range live {
		if _, err := s.Book(ctx, b); err == nil {
			t.Fatalf("booking %s again succeeded: the store lost it", b.ID)
		}
	}
}
