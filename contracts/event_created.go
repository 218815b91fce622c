package contracts

import (
	"errors"
	"fmt"
	"time"
)

// EventCreatedName is the name of EventCreated.
const EventCreatedName = "event.created"

// EventCreated is emitted by EventService when an event (a concert, say) is
// stored. It carries the capacity of its hall so that BookingService can
// refuse to overbook from its own copy, without asking EventService.
type EventCreated struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	LocationID string    `json:"location_id"`
	Hall       string    `json:"hall"`
	Capacity   int       `json:"capacity"`
	StartDate  time.Time `json:"start_date"`
	EndDate    time.Time `json:"end_date"`
}

// EventName returns "event.created".
func (EventCreated) EventName() string { return EventCreatedName }

// PartitionKey returns the event ID.
func (e EventCreated) PartitionKey() string { return e.ID }

// Validate requires the IDs, the hall and a capacity of 1 to
// MaxCapacity; both dates or neither, within CheckDate's range, the end
// not before the start; every text must be clean (see CheckText).
func (e EventCreated) Validate() error {
	switch {
	case e.ID == "":
		return invalid(EventCreatedName, "id is empty")
	case e.LocationID == "" || e.Hall == "":
		return invalid(EventCreatedName, "location_id and hall are required")
	}
	err := firstError(
		CheckID("id", e.ID),
		CheckID("location_id", e.LocationID),
		CheckText("name", e.Name),
		CheckText("hall", e.Hall),
		CheckCapacity(e.Capacity),
		CheckDate("start_date", e.StartDate),
		CheckDate("end_date", e.EndDate),
	)
	switch {
	case err != nil:
	case e.StartDate.IsZero() != e.EndDate.IsZero():
		// Older events carry neither; one alone would be served as an
		// end (or start) in year 1.
		err = errors.New("start_date and end_date come together: one is missing")
	case !e.StartDate.IsZero() && e.EndDate.Before(e.StartDate):
		err = fmt.Errorf("end_date %s is before start_date %s", e.EndDate.UTC().Format(time.RFC3339Nano), e.StartDate.UTC().Format(time.RFC3339Nano))
	}
	if err != nil {
		return invalid(EventCreatedName, "%v", err)
	}
	return nil
}
