package bookingservice

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestBookingTableAgreesWithAMap runs the same random adds, removes and
// lookups on a bookingTable and on a map, through many growths, with many
// tombstones and compactions, and checks that both hold the same
// bookings, read back field for field.
func TestBookingTableAgreesWithAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tab := newBookingTable()
	model := map[string]Booking{}
	index := map[string]int{} // the table's index of each booking in model
	at := time.Date(2026, 12, 6, 20, 0, 0, 123456789, time.UTC)
	id := func() string { return fmt.Sprintf("b-%d", rng.IntN(5000)) }
	compactions := 0
	for step := range 40_000 {
		switch k := id(); {
		case rng.IntN(4) == 0: // remove
			i, ok := tab.remove(k)
			_, want := model[k]
			if ok != want || (ok && i != index[k]) {
				t.Fatalf("step %d: remove(%q) = %d, %v; want %d, %v", step, k, i, ok, index[k], want)
			}
			delete(model, k)
			delete(index, k)
			if tab.wasteful() { // as MemoryStore.remove does
				moved := tab.compact()
				for k, i := range index {
					index[k] = int(moved[i])
				}
				compactions++
			}
		case tab.has(k) != (model[k].ID != ""):
			t.Fatalf("step %d: has(%q) = %v, the map says %v", step, k, tab.has(k), model[k].ID != "")
		case model[k].ID == "": // add
			b := Booking{ID: k, ShowID: "show-" + k, UserID: strings.Repeat("u", rng.IntN(4)), Seats: 1 + rng.IntN(9),
				Date: at.Add(time.Duration(step) * time.Second)}
			model[k], index[k] = b, tab.add(b)
		}
	}
	if len(model) == 0 || compactions == 0 {
		t.Fatalf("the model holds %d bookings after %d compactions: the test did not exercise the table", len(model), compactions)
	}
	for k, want := range model {
		if !tab.has(k) {
			t.Fatalf("booking %q is missing", k)
		}
		if got := tab.booking(index[k]); got != want {
			t.Fatalf("booking %q reads back as %+v, want %+v", k, got, want)
		}
	}
	for i := range 5000 {
		k := fmt.Sprintf("b-%d", i)
		if _, ok := model[k]; tab.has(k) != ok {
			t.Fatalf("has(%q) = %v, the map says %v", k, !ok, ok)
		}
	}
}

// TestBookingTableKeepsWhatABookingHolds reads back the longest IDs the
// contracts allow, an empty user ID, a zero date (an event.booked
// without one is accepted) and a date in another zone, as the same
// instant.
func TestBookingTableKeepsWhatABookingHolds(t *testing.T) {
	tab := newBookingTable()
	long := strings.Repeat("x", 200)
	paris := time.FixedZone("CET", 3600)
	for _, b := range []Booking{
		{ID: long, ShowID: long, UserID: long, Seats: 1, Date: time.Date(2026, 12, 6, 21, 0, 0, 1, paris)},
		{ID: "b", ShowID: "s", Seats: 7},
	} {
		got := tab.booking(tab.add(b))
		if got.ID != b.ID || got.ShowID != b.ShowID || got.UserID != b.UserID || got.Seats != b.Seats {
			t.Errorf("%.20q reads back as %.20q", fmt.Sprint(b), fmt.Sprint(got))
		}
		if !got.Date.Equal(b.Date) || got.Date.IsZero() != b.Date.IsZero() {
			t.Errorf("date %v reads back as %v", b.Date, got.Date)
		}
	}
}
