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

// Validate requires an ID, clean text (see CheckText) and at most MaxHalls
// halls, each with a name of its own and a capacity of 1 to MaxCapacity.
func (e LocationCreated) Validate() error {
	if e.ID == "" {
		return invalid(LocationCreatedName, "id is empty")
	}
	if e.Name == "" {
		return invalid(LocationCreatedName, "name is empty")
	}
	err := firstError(
		CheckID("id", e.ID),
		CheckText("name", e.Name),
		CheckText("address", e.Address),
		CheckText("country", e.Country),
	)
	if err != nil {
		return invalid(LocationCreatedName, "%v", err)
	}
	if len(e.Halls) > MaxHalls {
		return invalid(LocationCreatedName, "%d halls, at most %d halls are allowed", len(e.Halls), MaxHalls)
	}
	for i, h := range e.Halls {
		if h.Name == "" {
			return invalid(LocationCreatedName, "hall %d needs a name", i)
		}
		if err := firstError(CheckText("hall name", h.Name), CheckCapacity(h.Capacity)); err != nil {
			return invalid(LocationCreatedName, "hall %d: %v", i, err)
		}
		// An event names its hall: two of one name could not be told
		// apart (and the SQL stores refuse them).
		for j := range i {
			if e.Halls[j].Name == h.Name {
				return invalid(LocationCreatedName, "hall %d: there are two halls called %q", i, h.Name)
			}
		}
	}
	return nil
}
