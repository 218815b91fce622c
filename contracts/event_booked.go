package contracts

import "time"

// EventBookedName is the name of EventBooked.
const EventBookedName = "event.booked"

// EventBooked is emitted by BookingService when a booking is stored. ID is
// the booking's ID; the partition key is the event's ID, so that all
// bookings of one event stay in order with its creation.
type EventBooked struct {
	ID      string    `json:"id"`
	EventID string    `json:"event_id"`
	UserID  string    `json:"user_id"`
	Seats   int       `json:"seats"`
	Date    time.Time `json:"date"`
}

// EventName returns "event.booked".
func (EventBooked) EventName() string { return EventBookedName }

// PartitionKey returns the event ID (not the booking ID).
func (e EventBooked) PartitionKey() string { return e.EventID }

// Validate requires the booking and event IDs and 1 to MaxSeats seats;
// a date within CheckDate's range; user_id, if set, must be clean text of
// at most MaxIDBytes.
func (e EventBooked) Validate() error {
	if e.ID == "" || e.EventID == "" {
		return invalid(EventBookedName, "id and event_id are required")
	}
	err := firstError(
		CheckID("id", e.ID),
		CheckID("event_id", e.EventID),
		checkString("user_id", e.UserID, MaxIDBytes),
		CheckSeats(e.Seats),
		CheckDate("date", e.Date),
	)
	if err != nil {
		return invalid(EventBookedName, "%v", err)
	}
	return nil
}
