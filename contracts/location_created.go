package contracts

// LocationCreatedName is the name of LocationCreated.
const LocationCreatedName = "location.created"

// Hall is a room of a location; Capacity is its number of seats.
type Hall struct {
	Name     string `json:"name"`
	Capacity int    `json:"capacity"`
}

// LocationCreated is emitted by EventService when a location is stored.
type LocationCreated struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Address   string `json:"address"`
	Country   string `json:"country"`
	OpenTime  int    `json:"open_time"`
	CloseTime int    `json:"close_time"`
	Halls     []Hall `json:"halls"`
}

// EventName returns "location.created".
func (LocationCreated) EventName() string { return LocationCreatedName }

// PartitionKey returns the location ID.
func (e LocationCreated) PartitionKey() string { return e.ID }

// Validate requires an ID and halls with a name and a non-negative capacity.
func (e LocationCreated) Validate() error {
	if e.ID == "" {
		return invalid(LocationCreatedName, "id is empty")
	}
	for i, h := range e.Halls {
		if h.Name == "" || h.Capacity < 0 {
			return invalid(LocationCreatedName, "hall %d needs a name and a capacity >= 0", i)
		}
	}
	return nil
}
