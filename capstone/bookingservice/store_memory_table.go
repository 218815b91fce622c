package bookingservice

import (
	"hash/maphash"
	"time"
)

// bookingTable is the memory store's bookings: each one stored once, found
// by its ID, with no pointer in it that the garbage collector must follow.
//
// Why not a map[string]Booking: a replay stores hundreds of thousands of
// bookings, and every string in a map or a slice is a pointer. While the
// store grows, the collector runs again and again (the records being read
// are garbage by the megabyte) and each time it follows every pointer the
// store holds: in a profile of a replay of 200,000 bookings that marking,
// and the map's own growth, cost more CPU than decoding the records
// (docs/performance.md, "A store the collector can skip"). Here the IDs
// are bytes in large blocks (text), the bookings fixed-size records in
// large blocks (recs), and the index from ID to booking a slice of
// integers (slots): the collector sees a few hundred blocks with nothing
// inside to follow.
//
// The price is this file: an open-addressing hash table with linear
// probing. Everything else in the store (the exercise's applyOnce
// included) only calls has, add, booking, remove and compact.
type bookingTable struct {
	text [][]byte       // blocks of textBlock bytes: each booking's ID, show ID and user ID, back to back
	recs [][]bookingRec // blocks of recBlock records; booking i is recs[i/recBlock][i%recBlock]
	n    int            // records in recs, removed ones included
	gone int            // of them, removed ones (kept while a live booking follows)

	// slots is the index: a power-of-two number of slots, each 0 (empty),
	// tombstone (a removed booking's slot, which a search passes over) or
	// tag<<32 | index+1, where tag is the high half of the ID's hash (never
	// 0, so a booking's slot is neither of the others).
	// A booking is looked for from slot tag&(len-1), one slot after the
	// other, until its ID or an empty slot.
	slots []uint64
	used  int // slots that are not empty, tombstones included
	seed  maphash.Seed
}

// bookingRec is a stored booking: where its text is, its seats and its
// date (in UTC: what a store keeps is the instant, as the SQL stores do).
type bookingRec struct {
	text                    uint64 // offset of its ID in text, as if the blocks were one
	sec                     int64  // the date, in Unix seconds
	seats                   int
	nsec                    int32 // and nanoseconds
	idLen, showLen, userLen uint8 // contracts.MaxIDBytes is 200
	removed                 bool
}

const (
	textBlock = 64 << 10  // bytes; a booking's text is at most 3*200
	recBlock  = 4096      // records (32 bytes each)
	indexBits = 1<<32 - 1 // a slot's index+1
	tombstone = indexBits // tag 0: no booking's slot
	minSlots  = 64
)

func newBookingTable() *bookingTable {
	return &bookingTable{slots: make([]uint64, minSlots), seed: maphash.MakeSeed()}
}

// tag is the high half of id's hash, 1 in place of 0, so that a slot
// holding a booking is never 0 or tombstone.
func (t *bookingTable) tag(id string) uint64 {
	if h := maphash.String(t.seed, id) >> 32; h != 0 {
		return h
	}
	return 1
}

// find returns the slot of the booking called id and true, or the slot
// where it would go (the first tombstone or empty slot on its way) and
// false.
func (t *bookingTable) find(id string) (int, bool) { return t.findTagged(id, t.tag(id)) }

func (t *bookingTable) findTagged(id string, tag uint64) (int, bool) {
	mask := len(t.slots) - 1
	free := -1
	for i := int(tag) & mask; ; i = (i + 1) & mask {
		s := t.slots[i]
		switch {
		case s == 0:
			if free < 0 {
				free = i
			}
			return free, false
		case s == tombstone:
			if free < 0 {
				free = i
			}
		case s>>32 == tag && t.idIs(int(s&indexBits)-1, id):
			return i, true
		}
	}
}

// has reports whether a booking called id is stored.
func (t *bookingTable) has(id string) bool {
	_, ok := t.find(id)
	return ok
}

// add stores b, whose ID must not be stored, and returns its index. A
// slot has 32 bits for it: the table holds fewer than 1<<32-1 bookings,
// far more than memory could hold at about 80 bytes each.
func (t *bookingTable) add(b Booking) int {
	if (t.used+1)*4 > len(t.slots)*3 { // at most three quarters full
		t.grow()
	}
	tag := t.tag(b.ID)
	slot, _ := t.findTagged(b.ID, tag)
	if t.slots[slot] == 0 {
		t.used++
	}
	i := t.n
	t.n++
	if i/recBlock == len(t.recs) { // else the spare block dropRemovedTail kept
		t.recs = append(t.recs, make([]bookingRec, recBlock))
	}
	r := &t.recs[i/recBlock][i%recBlock]
	*r = bookingRec{text: t.addText(b.ID, b.ShowID, b.UserID), sec: b.Date.Unix(), nsec: int32(b.Date.Nanosecond()),
		seats: b.Seats, idLen: uint8(len(b.ID)), showLen: uint8(len(b.ShowID)), userLen: uint8(len(b.UserID))}
	t.slots[slot] = tag<<32 | uint64(i+1)
	return i
}

// addText copies the strings into the last text block, or a new one if
// they do not fit, and returns where they start.
func (t *bookingTable) addText(ss ...string) uint64 {
	size := 0
	for _, s := range ss {
		size += len(s)
	}
	k := len(t.text) - 1
	if k < 0 || len(t.text[k])+size > textBlock {
		t.text = append(t.text, make([]byte, 0, textBlock))
		k++
	}
	at := uint64(k)*textBlock + uint64(len(t.text[k]))
	for _, s := range ss {
		t.text[k] = append(t.text[k], s...)
	}
	return at
}

// grow doubles the slots (or only drops the tombstones, if there are
// many) and puts every stored booking back.
func (t *bookingTable) grow() {
	live := t.n - t.gone // every record not removed has its slot
	size := len(t.slots)
	if (live+1)*2 > size { // more than half live: double
		size *= 2
	}
	old := t.slots
	t.slots, t.used = make([]uint64, size), live
	mask := size - 1
	for _, s := range old {
		if s == 0 || s == tombstone {
			continue
		}
		i := int(s>>32) & mask
		for t.slots[i] != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = s
	}
}

// rec returns booking i's record.
func (t *bookingTable) rec(i int) *bookingRec { return &t.recs[i/recBlock][i%recBlock] }

// textOf returns n bytes of text from at, without copying.
func (t *bookingTable) textOf(at uint64, n int) []byte {
	off := at % textBlock
	return t.text[at/textBlock][off : off+uint64(n)]
}

// idIs reports whether booking i is called id (without allocating: the
// conversion is only compared).
func (t *bookingTable) idIs(i int, id string) bool {
	r := t.rec(i)
	return string(t.textOf(r.text, int(r.idLen))) == id
}

// booking returns booking i as a Booking.
func (t *bookingTable) booking(i int) Booking {
	r := t.rec(i)
	all := string(t.textOf(r.text, int(r.idLen)+int(r.showLen)+int(r.userLen))) // one allocation for the three
	show := all[r.idLen:]
	return Booking{ID: all[:r.idLen], ShowID: show[:r.showLen], UserID: show[r.showLen:], Seats: r.seats,
		Date: time.Unix(r.sec, int64(r.nsec)).UTC()}
}

// remove takes the booking called id out of the index and marks its
// record removed; it returns its index, or false if no such booking is
// stored. Its record and text are given back once no live booking is
// stored after it (dropRemovedTail).
func (t *bookingTable) remove(id string) (int, bool) {
	slot, ok := t.find(id)
	if !ok {
		return 0, false
	}
	i := int(t.slots[slot]&indexBits) - 1
	t.slots[slot] = tombstone
	t.rec(i).removed = true
	t.gone++
	t.dropRemovedTail()
	return i, true
}

// wasteful reports whether the removed bookings kept below live ones
// take more room than the live ones and a block of records: then the
// store compacts the table.
func (t *bookingTable) wasteful() bool {
	return t.gone > recBlock && t.gone > t.n-t.gone
}

// compact rebuilds the table from its live bookings, in their order, and
// returns where each one went: moved[old index] is its new index. It
// costs a pass over the table, once per removals as many as the live
// bookings: a booking taken back below live ones (a partial outage: the
// broker refuses some bookings while it takes others) is given back here.
func (t *bookingTable) compact() (moved []uint32) {
	old := *t
	*t = bookingTable{slots: make([]uint64, minSlots), seed: old.seed}
	moved = make([]uint32, old.n)
	for i := range old.n {
		if !old.rec(i).removed {
			moved[i] = uint32(t.add(old.booking(i)))
		}
	}
	return moved
}

// dropRemovedTail gives back the records, and their text, of the removed
// bookings at the end. The booking taken back is nearly always the last
// stored (Book's Undo while the broker refuses event.booked, a window
// taken back from its end), so an outage with clients retrying does not
// make the store grow; one taken back below a live booking stays until
// every booking after it is taken back too, or the table is compacted.
func (t *bookingTable) dropRemovedTail() {
	for t.n > 0 && t.rec(t.n-1).removed {
		t.n--
		t.gone--
		r := t.rec(t.n)
		// Its text is at the end of its block: text goes in record order.
		// An emptied block stays as the one spare, for the next booking
		// (booking and taking back at a block's start would otherwise
		// allocate a block each time); a spare after it goes.
		k := int(r.text / textBlock)
		t.text[k] = t.text[k][:r.text%textBlock]
		t.text = t.text[:k+1]
		t.recs = t.recs[:t.n/recBlock+1] // the block of record n, maybe empty, stays as the spare
	}
}
