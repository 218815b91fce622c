package live

import (
	"context"
	"fmt"
	"time"

	"example.com/myevents/contracts"
)

// Record is one message as a watcher saw it on the broker: an event on
// its way to BookingService, or a dead-lettered copy.
type Record struct {
	Name    string // the event name; "" when the message carries none
	ID      string // the event's own ID (location, event or booking), when it decodes
	Key     string // Kafka: the record key, the event's partition key
	Summary string // what the event says, in a few words, or why it does not decode

	// Kafka: where the record is stored.
	Topic     string
	Partition int32
	Offset    int64

	// AMQP: where the message was published, and the queue it is routed to.
	Exchange   string
	RoutingKey string
	Queue      string
	MessageID  string

	Emitted    time.Time       // when it was written (Kafka: the record's timestamp; AMQP: when the tap got it)
	Event      contracts.Event // the decoded event, nil if it does not decode
	DeadLetter *DeadLetter     // set on a dead-lettered copy
}

// DeadLetter says why a message was dead-lettered, and which one it was.
type DeadLetter struct {
	Reason string // the x-dlq-reason header
	Error  string // the x-dlq-error header
	// The original: Kafka, its partition and offset in the events topic;
	// AMQP, its message ID.
	Partition int32
	Offset    int64
	MessageID string
}

// decode fills Name, ID, Event and Summary from an event name and a
// decoding result.
func (r *Record) decode(name string, ev contracts.Event, err error) {
	r.Name = name
	if err != nil {
		r.Summary = "does not decode: " + err.Error()
		return
	}
	r.Event = ev
	r.ID, r.Summary = describe(ev)
}

// describe returns an event's own ID and a short description of it.
// Transports hand over pointers; values are accepted too.
func describe(ev contracts.Event) (id, summary string) {
	switch e := ev.(type) {
	case contracts.LocationCreated:
		return describe(&e)
	case contracts.EventCreated:
		return describe(&e)
	case contracts.EventBooked:
		return describe(&e)
	case *contracts.LocationCreated:
		return e.ID, fmt.Sprintf("location %s, %d hall(s)", e.Name, len(e.Halls))
	case *contracts.EventCreated:
		return e.ID, fmt.Sprintf("%s in hall %s, %d seats", e.Name, e.Hall, e.Capacity)
	case *contracts.EventBooked:
		return e.ID, fmt.Sprintf("%s books %d seat(s)", e.UserID, e.Seats)
	}
	return "", ""
}

// eventKey identifies an event across its copies: a resend, a replay.
func eventKey(name, id string) string { return name + " " + id }

// Broker is what the view needs from the broker the demo runs on. Its
// methods are safe for concurrent use.
type Broker interface {
	// View describes the broker as it is now: the topics with their
	// partitions and offsets, or the exchange and the queues with their
	// depths.
	View(ctx context.Context) BrokerView
	// Waiting is how much there is for a starting BookingService to go
	// through: Kafka, the records in the log (it replays them all); AMQP,
	// the messages ready in its queue.
	Waiting(ctx context.Context) (int64, error)
	// Poison sends a message BookingService can never process, about the
	// event eventID, and says what it sent.
	Poison(ctx context.Context, eventID string) (string, error)
	// Close stops watching.
	Close() error
}

// BrokerView is the broker as the page shows it.
type BrokerView struct {
	Kind     string      `json:"kind"`  // "kafka" or "amqp"
	Title    string      `json:"title"` // such as "Kafka 127.0.0.1:40213 (embedded, in memory)"
	Up       bool        `json:"up"`
	Error    string      `json:"error,omitempty"`
	Topics   []TopicView `json:"topics,omitempty"`   // Kafka
	Exchange string      `json:"exchange,omitempty"` // AMQP
	Queues   []QueueView `json:"queues,omitempty"`   // AMQP
}

// TopicView is a Kafka topic with its partitions.
type TopicView struct {
	Name       string          `json:"name"`
	DeadLetter bool            `json:"deadLetter"`
	Partitions []PartitionView `json:"partitions"`
}

// PartitionView is one partition: its oldest offset and its end offset
// (one past its last record).
type PartitionView struct {
	Partition int32 `json:"partition"`
	Oldest    int64 `json:"oldest"`
	End       int64 `json:"end"`
}

// QueueView is an AMQP queue: the messages ready in it and its consumers.
type QueueView struct {
	Name       string `json:"name"`
	DeadLetter bool   `json:"deadLetter"`
	Ready      int    `json:"ready"`
	Consumers  int    `json:"consumers"`
	Error      string `json:"error,omitempty"`
}
