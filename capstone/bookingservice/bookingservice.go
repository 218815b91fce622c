// Package bookingservice is MyEvents' BookingService: it sells seats of
// events (concerts, say: [Show] in the code, so that "event" keeps meaning
// a message) and never sells more than a hall holds.
//
// It learns locations and events only from what it hears on the broker
// (event collaboration): [Service.Handle] is the msgqueue.Handler for
// location.created, event.created and event.booked ([Names]), and it keeps
// its own copy, so booking works while EventService is down. It hears its
// own event.booked too, and those of other instances.
//
// HTTP API (JSON; errors are {"error": "..."}):
//
//	POST /events/{id}/bookings  {seats, user_id} -> 201 {id, event_id, user_id, seats, date}
//	                            (date in Unix seconds); 404 if the event is unknown here,
//	                            409 if fewer seats are left; emits event.booked
//	GET  /events/{id}           -> 200 {id, name, location_id, hall, capacity, booked,
//	                            available, start_date, end_date}, 404 if unknown
//	GET  /events/{id}/bookings  -> 200 the event's bookings, oldest first; 404 if unknown
//	GET  /healthz               -> 200 when the store and the broker are up, else 503
//
// Bad input writes nothing: malformed JSON, unknown fields, a body that is
// not valid UTF-8 or invalid values (seats outside 1..1000, no user_id or
// one over 200 bytes, a control character in user_id or the event ID) are
// 400, a body over 64 KiB is 413. The stores check the same limits
// (package contracts), so no value can wrap a count or break a column.
//
// # No overbooking
//
// The capacity check and the reservation are one atomic step in the store
// (a conditional UPDATE in SQL, one mutex in memory), so concurrent requests
// for the last seats sell exactly the capacity, also with several instances
// sharing one PostgreSQL database.
//
// # Idempotent handling
//
// Every event is applied by ID, insert-if-absent: a redelivered or replayed
// event changes nothing. An event.booked for a booking already stored (our
// own, or a replay) does not count its seats twice; one this instance has
// not seen (sold by another instance, or replayed from the Kafka log into an
// empty memory store) is stored and its seats counted, without a capacity
// check: those seats are sold already.
//
// # Persist, then emit
//
// With a SQL store the booking, the reservation and event.booked are
// committed in one transaction (a transactional outbox); the client gets 201
// then, and event.booked is emitted at once (in the background: the outbox
// row is as durable as the booking). If the broker refuses it, a relay
// goroutine retries with backoff until it is delivered (at least once). With the memory store the Kafka log is the only durable record, so
// the client gets 201 only after the broker took event.booked; if it
// refused, the seats are given back and the client gets 503.
//
// # Group commit
//
// With a SQL store, concurrent bookings are sold in groups: one
// transaction, one commit (one fsync) for up to Options.Group of them,
// each still checked in arrival order against the seats left and answered
// on its own, only after the commit (group.go). The outbox marks of the
// events sent since ride along in the next group's transaction, and the
// service's own event.booked, heard back, costs no write. Options.Group 1
// is the one-at-a-time way, kept for comparison (docs/performance.md).
package bookingservice

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"example.com/myevents/capstone/internal/httpjson"
	"example.com/myevents/capstone/internal/outbox"
	"example.com/myevents/capstone/internal/service"
	"example.com/myevents/capstone/internal/sqldb"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
)

// Names returns the events BookingService handles: bind them all before
// listening, or events published before the first start are lost.
func Names() []string {
	return []string{contracts.LocationCreatedName, contracts.EventCreatedName, contracts.EventBookedName}
}

// Options configure a Service: the skeleton's (service.Options) and the
// group commit's. The zero value is usable.
type Options struct {
	// Logger receives the service's diagnostics (default slog.Default()).
	Logger *slog.Logger
	// BrokerHealth reports whether the broker connection is up, for
	// /healthz; nil means "assume it is".
	BrokerHealth func(context.Context) error
	// ListenerHealth reports whether the listener takes and applies
	// events (connected, not stuck, its handler able to apply them), for
	// /healthz as "event handling"; nil means "assume it does".
	ListenerHealth func(context.Context) error
	// Outbox tunes the outbox relay of a SQL store.
	Outbox outbox.Options
	// Group caps how many bookings a SQL store sells in one transaction
	// (group commit, group.go; default DefaultGroup). 1 is the
	// one-at-a-time way, kept for comparison: a transaction per booking,
	// each event.booked marked sent on its own, the 201 after the broker's
	// confirm, and the service's own event.booked applied through the
	// store when it comes back.
	Group int
	// GroupWait is how long a group waits for more bookings after its
	// first (default 0: it takes only the requests already waiting).
	GroupWait time.Duration
}

// Service is BookingService: an http.Handler serving the API above, on the
// skeleton both services share (its /healthz, its outbox relay, Close),
// and with Handle a msgqueue.Handler for the events in Names.
type Service struct {
	*service.Skeleton
	store Store
	group *committer   // nil: one transaction per booking
	own   *ownBookings // nil: our own event.booked goes through the store
	emits *emits       // nil: the 201 waits for the broker's confirm
	// applied counts the bookings applied from the broker (Applied).
	applied atomic.Int64
	// applyTimeout bounds one Handle or HandleBatch (applyDeadline).
	applyTimeout time.Duration
}

// applyDeadline bounds what applying one event, or one window of them,
// may spend in the store. A store stuck past it (a table locked, a
// database that does not answer) fails the call as unavailable: the
// listener keeps the event and tries again, and /healthz says the handler
// cannot apply events, where a call without a deadline would wait in
// silence.
const applyDeadline = 30 * time.Second

// Applied counts the bookings this instance applied from the broker: sold
// by another instance, or replayed from the Kafka log (its own, heard back
// as it sold them, are not counted: they were stored already).
func (s *Service) Applied() int64 { return s.applied.Load() }

// Compile-time checks that Handle is a msgqueue.Handler and HandleBatch
// a msgqueue.BatchHandler.
var (
	_ msgqueue.Handler      = (*Service)(nil).Handle
	_ msgqueue.BatchHandler = (*Service)(nil).HandleBatch
)

// New returns the service over store, emitting through em. With a SQL store
// it starts the outbox relay; Close stops it (unsent events stay in the
// outbox for the next start; call it after the HTTP server and the
// listener have stopped). The store and the emitter stay the caller's to
// close, after Close.
func New(store Store, em msgqueue.Emitter, opt Options) (*Service, error) {
	if store == nil {
		return nil, errors.New("bookingservice: New needs a store and an emitter")
	}
	if opt.Group <= 0 {
		opt.Group = DefaultGroup
	}
	gb, grouped := store.(GroupBooker)
	grouped = grouped && opt.Group > 1
	opt.Outbox.MarkEach = opt.Outbox.MarkEach || opt.Group == 1
	if grouped && opt.Outbox.MarkLinger == 0 {
		opt.Outbox.MarkLinger = markLinger
	}
	sk, err := service.New("bookingservice", store, em, service.Options{Logger: opt.Logger, BrokerHealth: opt.BrokerHealth,
		ListenerHealth: opt.ListenerHealth, Outbox: opt.Outbox})
	if err != nil {
		return nil, err
	}
	s := &Service{Skeleton: sk, store: store, applyTimeout: applyDeadline}
	if grouped {
		s.group = newCommitter(gb, sk.Publisher(), opt.Group, opt.GroupWait)
	}
	if store.Outbox() != nil && opt.Group > 1 {
		s.own = &ownBookings{}
		s.emits = newEmits()
	}
	s.Route("POST /events/{id}/bookings", s.book)
	s.Route("GET /events/{id}", s.getShow)
	s.Route("GET /events/{id}/bookings", s.listBookings)
	return s, nil
}

// Handle applies one event heard on the broker. It is idempotent. Returning
// an error leaves the event to be delivered again (the store failed);
// an invalid or unexpected event, or one the store refuses as invalid data,
// is a msgqueue.Permanent error, because no retry can fix it: the listener
// dead-letters it at once.
func (s *Service) Handle(ctx context.Context, ev contracts.Event) error {
	// Transports hand over pointers (contracts.Decode); accept values too.
	switch e := ev.(type) {
	case contracts.LocationCreated:
		ev = &e
	case contracts.EventCreated:
		ev = &e
	case contracts.EventBooked:
		ev = &e
	}
	if ev == nil {
		return msgqueue.Permanent(errors.New("bookingservice: nil event"))
	}
	if err := ev.Validate(); err != nil {
		return msgqueue.Permanent(fmt.Errorf("bookingservice: %w", err))
	}
	ctx, cancel := context.WithTimeout(ctx, s.applyTimeout)
	defer cancel()
	var err error
	switch e := ev.(type) {
	case *contracts.LocationCreated:
		err = s.store.SaveLocation(ctx, Location{
			ID: e.ID, Name: e.Name, Address: e.Address, Country: e.Country,
			OpenTime: e.OpenTime, CloseTime: e.CloseTime, Halls: e.Halls,
		})
	case *contracts.EventCreated:
		err = s.store.SaveShow(ctx, Show{
			ID: e.ID, Name: e.Name, LocationID: e.LocationID, Hall: e.Hall,
			Capacity: e.Capacity, StartDate: e.StartDate, EndDate: e.EndDate,
		})
	case *contracts.EventBooked:
		err = s.applyBooking(ctx, e)
	default:
		return msgqueue.Permanent(fmt.Errorf("bookingservice: unexpected event %s", ev.EventName()))
	}
	// Data the store refuses is refused again on every retry: dead-letter
	// it at once instead of holding the queue or partition up.
	if errors.Is(err, contracts.ErrInvalid) || sqldb.IsDataError(err) {
		return msgqueue.Permanent(fmt.Errorf("bookingservice: the store refused %s: %w", ev.EventName(), err))
	}
	// A store that is down, full or locked fails every event alike: the
	// listener keeps this one and tries it again, however long the outage
	// lasts, and says meanwhile that it cannot make progress (/healthz).
	if sqldb.IsUnavailable(err) {
		return msgqueue.Unavailable(fmt.Errorf("bookingservice: the store cannot apply %s: %w", ev.EventName(), err))
	}
	return err
}

// applyBooking applies an event.booked.
func (s *Service) applyBooking(ctx context.Context, e *contracts.EventBooked) error {
	if s.own != nil && s.own.take(e.ID) {
		return nil // our own, stored before it was emitted
	}
	applied, err := s.store.ApplyBooking(ctx, Booking{ID: e.ID, ShowID: e.EventID, UserID: e.UserID, Seats: e.Seats, Date: e.Date})
	if err != nil || !applied {
		return err
	}
	// A line per booking would be a line per record of a replay: count
	// them instead (Applied), and say it at debug level only.
	s.applied.Add(1)
	// Asked first: the arguments alone cost allocations per record.
	if s.Log.Enabled(ctx, slog.LevelDebug) {
		s.Log.Debug("booking applied from the broker", "booking", e.ID, "event", e.EventID, "seats", e.Seats)
	}
	s.warnOverbooked(ctx, e.EventID)
	return nil
}

// warnOverbooked says so when bookings sold against the same seats met
// here: instances that do not share a database each sell the full
// capacity.
func (s *Service) warnOverbooked(ctx context.Context, showID string) {
	if ev, err := s.store.Show(ctx, showID); err == nil && ev.Booked > ev.Capacity {
		s.Log.Warn("event overbooked: bookings were sold elsewhere against the same seats",
			"event", ev.ID, "booked", ev.Booked, "capacity", ev.Capacity)
	}
}

// errNotBatch refuses a window HandleBatch cannot apply whole; the
// listener hands its events to Handle one by one.
var errNotBatch = errors.New("bookingservice: the window holds more than event.booked, or the store applies one at a time")

// HandleBatch is the msgqueue.BatchHandler of Handle: it applies a window
// of event.booked in one store transaction, or under one lock of the
// memory store (BatchApplier), each booking once. Any other window, one
// with another event, fails with an error, as one does that the store
// refuses (a booking that does not validate) or when the store fails:
// then the listener hands each event to Handle alone, which says what is
// wrong with it.
func (s *Service) HandleBatch(ctx context.Context, evs []contracts.Event) error {
	ba, ok := s.store.(BatchApplier)
	if !ok {
		return errNotBatch
	}
	for _, ev := range evs {
		if e, ok := ev.(*contracts.EventBooked); !ok || e == nil {
			return errNotBatch
		}
	}
	buf := windows.Get().(*[]Booking)
	bs := (*buf)[:0]
	defer func() {
		clear(bs) // let the strings go
		*buf = bs[:0]
		windows.Put(buf)
	}()
	for _, ev := range evs {
		e := ev.(*contracts.EventBooked)
		// Our own, stored before it was emitted. Should the window
		// fail, Handle finds it stored already.
		if s.own == nil || !s.own.take(e.ID) {
			bs = append(bs, Booking{ID: e.ID, ShowID: e.EventID, UserID: e.UserID, Seats: e.Seats, Date: e.Date})
		}
	}
	if len(bs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.applyTimeout)
	defer cancel()
	applied, err := ba.ApplyBookings(ctx, bs)
	if err != nil {
		return fmt.Errorf("bookingservice: applying %d bookings: %w", len(bs), err)
	}
	shows := map[string]bool{}
	n := 0
	for i, ok := range applied {
		if ok {
			n++
			shows[bs[i].ShowID] = true
		}
	}
	s.applied.Add(int64(n))
	for id := range shows {
		s.warnOverbooked(ctx, id)
	}
	return nil
}

// windows holds HandleBatch's slices of bookings between windows: a
// replay applies thousands of them.
var windows = sync.Pool{New: func() any { return new([]Booking) }}

// bookingRequest is the body of POST /events/{id}/bookings.
type bookingRequest struct {
	Seats  int    `json:"seats"`
	UserID string `json:"user_id"`
}

// bookingJSON is a booking as the API shows it, its date in Unix seconds.
type bookingJSON struct {
	ID     string `json:"id"`
	ShowID string `json:"event_id"`
	UserID string `json:"user_id"`
	Seats  int    `json:"seats"`
	Date   int64  `json:"date"`
}

func bookingToJSON(b Booking) bookingJSON {
	return bookingJSON{ID: b.ID, ShowID: b.ShowID, UserID: b.UserID, Seats: b.Seats, Date: b.Date.Unix()}
}

func (s *Service) book(w http.ResponseWriter, r *http.Request) error {
	showID, err := showIDOf(r)
	if err != nil {
		return err
	}
	var req bookingRequest
	if err := httpjson.Decode(w, r, &req); err != nil {
		return err
	}
	if err := service.FirstError(contracts.CheckSeats(req.Seats), contracts.CheckID("user_id", req.UserID),
		contracts.CheckNoBidi("user_id", req.UserID)); err != nil {
		return httpjson.Errorf(http.StatusBadRequest, "invalid booking: %v", err)
	}
	b := Booking{
		ID: rand.Text(), ShowID: showID, UserID: req.UserID, Seats: req.Seats,
		Date: time.Now().UTC().Truncate(time.Microsecond),
	}
	msg, err := s.reserve(r.Context(), b)
	switch {
	case errors.Is(err, contracts.ErrInvalid):
		return httpjson.Errorf(http.StatusBadRequest, "invalid booking: %v", err)
	case errors.Is(err, ErrNotFound):
		return httpjson.Errorf(http.StatusNotFound, "event %q not found", b.ShowID)
	case errors.Is(err, ErrSoldOut):
		return httpjson.Errorf(http.StatusConflict, "not enough seats left for event %q", b.ShowID)
	case err != nil:
		return err
	}
	if err := s.publish(r.Context(), msg); err != nil {
		if errors.Is(err, outbox.ErrNotConfirmed) {
			// The seats stay held until the broker's late answer: kept if
			// it stored event.booked, given back if not.
			s.Log.Warn("event.booked not confirmed in time; the seats stay held until the broker answers", "booking", b.ID, "err", err)
			e := httpjson.Errorf(http.StatusServiceUnavailable,
				"the message broker has not confirmed booking %s in time, and may still record it: see GET /events/%s/bookings before you book again", b.ID, b.ShowID)
			e.LookFirst = true
			return e
		}
		if errors.Is(err, outbox.ErrNotPublished) {
			s.Log.Warn("event.booked not published, seats given back", "booking", b.ID, "err", err)
			return httpjson.Errorf(http.StatusServiceUnavailable, "the message broker is unavailable, nothing was booked: try again later")
		}
		return err
	}
	s.Log.Info("booked", "booking", b.ID, "event", b.ShowID, "seats", b.Seats)
	httpjson.Write(w, http.StatusCreated, bookingToJSON(b))
	return nil
}

// showJSON is BookingService's view of a show, dates in Unix seconds.
type showJSON struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	LocationID string `json:"location_id"`
	Hall       string `json:"hall"`
	Capacity   int    `json:"capacity"`
	Booked     int    `json:"booked"`
	Available  int    `json:"available"`
	StartDate  int64  `json:"start_date"`
	EndDate    int64  `json:"end_date"`
}

// showIDOf returns the show ID of the request's path (the API calls it
// the event ID), or a 400 for one no store could hold (a NUL, invalid
// UTF-8, too long).
func showIDOf(r *http.Request) (string, error) {
	return httpjson.Path(r, "id", "event id", contracts.CheckID)
}

// notFound answers a store's ErrNotFound for the show id with a 404 and
// passes any other error on.
func notFound(id string, err error) error {
	if errors.Is(err, ErrNotFound) {
		return httpjson.Errorf(http.StatusNotFound, "event %q not found", id)
	}
	return err
}

func (s *Service) getShow(w http.ResponseWriter, r *http.Request) error {
	id, err := showIDOf(r)
	if err != nil {
		return err
	}
	ev, err := s.store.Show(r.Context(), id)
	if err != nil {
		return notFound(id, err)
	}
	httpjson.Write(w, http.StatusOK, showJSON{
		ID: ev.ID, Name: ev.Name, LocationID: ev.LocationID, Hall: ev.Hall,
		Capacity: ev.Capacity, Booked: ev.Booked, Available: max(ev.Capacity-ev.Booked, 0),
		StartDate: ev.StartDate.Unix(), EndDate: ev.EndDate.Unix(),
	})
	return nil
}

func (s *Service) listBookings(w http.ResponseWriter, r *http.Request) error {
	id, err := showIDOf(r)
	if err != nil {
		return err
	}
	bs, err := s.store.Bookings(r.Context(), id)
	if err != nil {
		return notFound(id, err)
	}
	out := make([]bookingJSON, len(bs))
	for i, b := range bs {
		out[i] = bookingToJSON(b)
	}
	httpjson.Write(w, http.StatusOK, out)
	return nil
}
