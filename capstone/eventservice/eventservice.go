// Package eventservice is MyEvents' EventService: it manages locations (with
// their halls) and events (concerts, say), and announces each new one with an
// event on the broker: location.created and event.created, which carries the
// hall's capacity so that BookingService can refuse to overbook from its own
// copy.
//
// HTTP API (JSON; errors are {"error": "..."}):
//
//	POST /locations           {name, address, country, open_time, close_time, halls: [{name, capacity}]}
//	                          -> 201 the stored location with its id; emits location.created
//	GET  /locations           -> 200 every location
//	GET  /locations/{id}      -> 200 one location, 404 if unknown
//	POST /events              {name, location_id, hall, start_date, end_date, duration}
//	                          (dates as Unix seconds) -> 201 the stored event with its id and
//	                          capacity; 422 for an unknown location or hall; emits event.created
//	GET  /events              -> 200 every event
//	GET  /events/{id}         -> 200 one event, 404 if unknown
//	GET  /events/name/{name}  -> 200 the oldest event with that name, 404 if none
//	GET  /healthz             -> 200 when the store and the broker are up, else 503
//
// Bad input writes nothing: malformed JSON, a body that is not valid UTF-8,
// unknown fields or invalid values are 400, a body over 64 KiB is 413.
// Values keep the limits of package contracts (hall capacity 1..1,000,000,
// at most 100 halls, text of at most 200 bytes without control characters,
// dates up to the end of year 9999), checked here and again by the stores,
// so every event fits a broker message and every column.
//
// # Persist, then emit
//
// A location or event is stored first and announced second. With a SQL store
// (SQLite or PostgreSQL) the row and its event are committed together in a
// transactional outbox, the client gets 201 as soon as they are, and the
// event is emitted at once; if the broker refuses it, a relay goroutine
// retries with backoff until it is delivered (at least once). With the
// memory store there is no outbox: the client gets 201 only after the broker
// took the event; if it refused, the write is undone and the client gets 503.
package eventservice

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"time"

	"example.com/myevents/capstone/internal/httpjson"
	"example.com/myevents/capstone/internal/outbox"
	"example.com/myevents/capstone/internal/service"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
)

// Options configure a Service. The zero value is usable.
type Options = service.Options

// Service is EventService: an http.Handler serving the API above, on the
// skeleton both services share (its /healthz, its outbox relay, Close).
type Service struct {
	*service.Skeleton
	store Store
}

// New returns the service over store, emitting through em. With a SQL store
// it starts the outbox relay; Close stops it (unsent events stay in the
// outbox for the next start). The store and the emitter stay the caller's
// to close, after Close.
func New(store Store, em msgqueue.Emitter, opt Options) (*Service, error) {
	sk, err := service.New("eventservice", store, em, opt)
	if err != nil {
		return nil, err
	}
	s := &Service{Skeleton: sk, store: store}
	s.Route("POST /locations", s.createLocation)
	s.Route("GET /locations", s.listLocations)
	s.Route("GET /locations/{id}", s.getLocation)
	s.Route("POST /events", s.createEvent)
	s.Route("GET /events", s.listEvents)
	s.Route("GET /events/{id}", s.getEvent)
	s.Route("GET /events/name/{name}", s.getEventByName)
	return s, nil
}

// decodeRequest reads the body of a POST into a request and validates it:
// a request that breaks the limits is a 400 that says what it is
// ("invalid location: name is required").
func decodeRequest[R interface{ validate() error }](w http.ResponseWriter, r *http.Request, what string) (R, error) {
	var req R
	if err := httpjson.Decode(w, r, &req); err != nil {
		return req, err
	}
	if err := req.validate(); err != nil {
		return req, httpjson.Errorf(http.StatusBadRequest, "invalid %s: %v", what, err)
	}
	return req, nil
}

// locationRequest is the body of POST /locations.
type locationRequest struct {
	Name      string `json:"name"`
	Address   string `json:"address"`
	Country   string `json:"country"`
	OpenTime  int    `json:"open_time"`
	CloseTime int    `json:"close_time"`
	Halls     []Hall `json:"halls"`
}

// validate checks the values a client sent against the limits of package
// contracts, which the event announcing them must keep.
func (r locationRequest) validate() error {
	switch {
	case r.Name == "":
		return errors.New("name is required")
	case r.OpenTime < 0 || r.CloseTime < 0:
		return errors.New("open_time and close_time must not be negative")
	case len(r.Halls) > contracts.MaxHalls:
		return fmt.Errorf("%d halls, at most %d halls are allowed", len(r.Halls), contracts.MaxHalls)
	}
	if err := service.FirstError(contracts.CheckText("name", r.Name), contracts.CheckText("address", r.Address),
		contracts.CheckText("country", r.Country)); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i, h := range r.Halls {
		switch {
		case h.Name == "":
			return fmt.Errorf("halls[%d]: name is required", i)
		case seen[h.Name]:
			return fmt.Errorf("halls[%d]: there are two halls called %q", i, h.Name)
		}
		if err := service.FirstError(contracts.CheckText("name", h.Name), contracts.CheckCapacity(h.Capacity)); err != nil {
			return fmt.Errorf("halls[%d]: %w", i, err)
		}
		seen[h.Name] = true
	}
	return nil
}

func (s *Service) createLocation(w http.ResponseWriter, r *http.Request) error {
	req, err := decodeRequest[locationRequest](w, r, "location")
	if err != nil {
		return err
	}
	loc := Location{
		ID: rand.Text(), Name: req.Name, Address: req.Address, Country: req.Country,
		OpenTime: req.OpenTime, CloseTime: req.CloseTime, Halls: append([]Hall{}, req.Halls...),
	}
	if err := fitsAMessage(locationCreated(loc)); err != nil {
		return httpjson.Errorf(http.StatusBadRequest, "invalid location: %v", err)
	}
	msg, err := s.store.AddLocation(r.Context(), loc)
	if errors.Is(err, contracts.ErrInvalid) { // the store's own check of the limits
		return httpjson.Errorf(http.StatusBadRequest, "invalid location: %v", err)
	}
	if err != nil {
		return err
	}
	if err := s.publishOrUndo(r.Context(), msg); err != nil {
		return err
	}
	s.Log.Info("location created", "id", loc.ID, "name", loc.Name)
	httpjson.Write(w, http.StatusCreated, loc)
	return nil
}

func (s *Service) listLocations(w http.ResponseWriter, r *http.Request) error {
	locs, err := s.store.Locations(r.Context())
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, locs)
	return nil
}

func (s *Service) getLocation(w http.ResponseWriter, r *http.Request) error {
	return getOne(w, r, "id", "location id", contracts.CheckID, s.store.Location, "location %q not found",
		func(l Location) Location { return l })
}

// getOne answers a GET of one item: the path value key (what, for a 400
// if check refuses it), the item find returns for it (a 404 with
// notFound, formatted with the value, if there is none) as show shows it.
func getOne[T, J any](w http.ResponseWriter, r *http.Request, key, what string, check func(field, value string) error,
	find func(context.Context, string) (T, error), notFound string, show func(T) J) error {
	v, err := httpjson.Path(r, key, what, check)
	if err != nil {
		return err
	}
	item, err := find(r.Context(), v)
	if errors.Is(err, ErrNotFound) {
		return httpjson.Errorf(http.StatusNotFound, notFound, v)
	}
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, show(item))
	return nil
}

// eventRequest is the body of POST /events. Dates are Unix seconds.
type eventRequest struct {
	Name       string `json:"name"`
	LocationID string `json:"location_id"`
	Hall       string `json:"hall"`
	StartDate  int64  `json:"start_date"`
	EndDate    int64  `json:"end_date"`
	Duration   int    `json:"duration"`
}

// lastDate is the last second (Unix) a date may have: 9999-12-31
// 23:59:59 UTC. Later ones overflow the microseconds the stores keep and
// cannot be written as RFC 3339 JSON.
const lastDate = 253402300799

// validate checks the values a client sent.
func (r eventRequest) validate() error {
	switch {
	case r.Name == "":
		return errors.New("name is required")
	case r.LocationID == "" || r.Hall == "":
		return errors.New("location_id and hall are required")
	case r.StartDate == 0:
		return errors.New("start_date is required (Unix seconds)")
	case r.StartDate < 0:
		return fmt.Errorf("start_date must be after 1970-01-01 (Unix seconds above 0), got %d", r.StartDate)
	case r.StartDate > lastDate:
		return fmt.Errorf("start_date must be at most %d (the end of year 9999), got %d", lastDate, r.StartDate)
	case r.EndDate < r.StartDate:
		return fmt.Errorf("end_date %d is before start_date %d", r.EndDate, r.StartDate)
	case r.EndDate > lastDate:
		return fmt.Errorf("end_date must be at most %d (the end of year 9999), got %d", lastDate, r.EndDate)
	case r.Duration < 0:
		return fmt.Errorf("duration %d is negative", r.Duration)
	}
	return service.FirstError(contracts.CheckText("name", r.Name), contracts.CheckID("location_id", r.LocationID),
		contracts.CheckText("hall", r.Hall))
}

// eventJSON is an event as the API shows it, dates in Unix seconds.
type eventJSON struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	LocationID string `json:"location_id"`
	Hall       string `json:"hall"`
	Capacity   int    `json:"capacity"`
	StartDate  int64  `json:"start_date"`
	EndDate    int64  `json:"end_date"`
	Duration   int    `json:"duration"`
}

func toJSON(e Event) eventJSON {
	return eventJSON{
		ID: e.ID, Name: e.Name, LocationID: e.LocationID, Hall: e.Hall, Capacity: e.Capacity,
		StartDate: e.StartDate.Unix(), EndDate: e.EndDate.Unix(), Duration: e.Duration,
	}
}

func (s *Service) createEvent(w http.ResponseWriter, r *http.Request) error {
	req, err := decodeRequest[eventRequest](w, r, "event")
	if err != nil {
		return err
	}
	// Locations are never changed or deleted in a SQL store, so the hall
	// read here is still the hall when the event is stored.
	loc, err := s.store.Location(r.Context(), req.LocationID)
	if errors.Is(err, ErrNotFound) {
		return httpjson.Errorf(http.StatusUnprocessableEntity, "location %q does not exist", req.LocationID)
	}
	if err != nil {
		return err
	}
	hall, ok := loc.hall(req.Hall)
	if !ok {
		return httpjson.Errorf(http.StatusUnprocessableEntity, "location %q has no hall %q", req.LocationID, req.Hall)
	}
	ev := Event{
		ID: rand.Text(), Name: req.Name, LocationID: loc.ID, Hall: hall.Name, Capacity: hall.Capacity,
		StartDate: time.Unix(req.StartDate, 0).UTC(), EndDate: time.Unix(req.EndDate, 0).UTC(), Duration: req.Duration,
	}
	if err := fitsAMessage(eventCreated(ev)); err != nil {
		return httpjson.Errorf(http.StatusBadRequest, "invalid event: %v", err)
	}
	msg, err := s.store.AddEvent(r.Context(), ev)
	switch {
	case errors.Is(err, ErrNotFound):
		return httpjson.Errorf(http.StatusUnprocessableEntity, "location %q does not exist", req.LocationID)
	case errors.Is(err, contracts.ErrInvalid):
		// The request was valid: what the store holds of the location
		// (a row from before today's limits) makes no valid event.
		return httpjson.Errorf(http.StatusUnprocessableEntity, "location %q's hall %q cannot hold an event: %v", req.LocationID, req.Hall, err)
	case err != nil:
		return err
	}
	if err := s.publishOrUndo(r.Context(), msg); err != nil {
		return err
	}
	s.Log.Info("event created", "id", ev.ID, "name", ev.Name, "capacity", ev.Capacity)
	httpjson.Write(w, http.StatusCreated, toJSON(ev))
	return nil
}

func (s *Service) listEvents(w http.ResponseWriter, r *http.Request) error {
	evs, err := s.store.Events(r.Context())
	if err != nil {
		return err
	}
	out := make([]eventJSON, len(evs))
	for i, e := range evs {
		out[i] = toJSON(e)
	}
	httpjson.Write(w, http.StatusOK, out)
	return nil
}

func (s *Service) getEvent(w http.ResponseWriter, r *http.Request) error {
	return getOne(w, r, "id", "event id", contracts.CheckID, s.store.Event, "event %q not found", toJSON)
}

func (s *Service) getEventByName(w http.ResponseWriter, r *http.Request) error {
	return getOne(w, r, "name", "name", contracts.CheckText, s.store.EventByName, "no event named %q", toJSON)
}

// fitsAMessage refuses an event that no broker message could carry (over
// msgqueue.MaxMessageSize as a Kafka record, key and envelope, the larger
// of the two wire forms): it could never be emitted, so it must not be
// stored. Valid text can still get there: a JSON encoder writes "<" as six
// bytes.
func fitsAMessage(ev contracts.Event) error {
	value, err := contracts.Wrap(ev)
	if err != nil {
		return err
	}
	if err := msgqueue.CheckSize(msgqueue.RecordSize(ev.PartitionKey(), value)); err != nil {
		return fmt.Errorf("too large to announce on the broker: %w", err)
	}
	return nil
}

// publish hands the event of a committed write to the broker. Only a store
// without an outbox can fail here, after undoing the write: 503.
func (s *Service) publishOrUndo(ctx context.Context, msg outbox.Message) error {
	err := s.Publish(ctx, msg)
	if errors.Is(err, outbox.ErrNotConfirmed) {
		// The write stands until the broker's late answer: kept if it
		// stored the event, undone if not.
		s.Log.Warn("event not confirmed in time; the write stands until the broker answers", "event", msg.Event.EventName(), "err", err)
		e := httpjson.Errorf(http.StatusServiceUnavailable,
			"the message broker has not confirmed the %s in time, and may still record it: look it up before you try again", msg.Event.EventName())
		e.LookFirst = true
		return e
	}
	if errors.Is(err, outbox.ErrNotPublished) {
		s.Log.Warn("event not published, write undone", "event", msg.Event.EventName(), "err", err)
		if errors.Is(err, msgqueue.ErrUnroutable) {
			// The broker is up, but no queue is bound for this event yet:
			// a memory store cannot keep the write for later.
			return httpjson.Errorf(http.StatusServiceUnavailable, "no service listens for %s yet, nothing was stored: start BookingService, then try again", msg.Event.EventName())
		}
		return httpjson.Errorf(http.StatusServiceUnavailable, "the message broker is unavailable, nothing was stored: try again later")
	}
	return err
}
