package live

import (
	"io"
	"log/slog"
	"testing"
)

// TestDeadLetterBeforeItsOriginal: two watchers feed the view, so a
// dead-lettered copy can arrive before the record it copies. The original
// still shows why it will never be applied, in either order, on both
// brokers' ways of naming a message.
func TestDeadLetterBeforeItsOriginal(t *testing.T) {
	original := Record{Name: "event.booked", Topic: "events", Partition: 5, Offset: 5}
	copyOf := Record{Name: "event.booked", Topic: "events.dlq", DeadLetter: &DeadLetter{Reason: "invalid-payload", Partition: 5, Offset: 5}}
	amqpOriginal := Record{Name: "event.booked", Queue: "bookingservice", MessageID: "m-1"}
	amqpCopy := Record{Name: "event.booked", Queue: "bookingservice.dlq", DeadLetter: &DeadLetter{Reason: "invalid-payload", MessageID: "m-1"}}
	for _, tc := range []struct {
		name  string
		order []Record
	}{
		{"kafka, original first", []Record{original, copyOf}},
		{"kafka, copy first", []Record{copyOf, original}},
		{"amqp, copy first", []Record{amqpCopy, amqpOriginal}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
			for _, r := range tc.order {
				v.Add(r)
			}
			v.mu.Lock()
			s := v.snapshotLocked()
			v.mu.Unlock()
			var found bool
			for _, f := range s.Flow {
				if f.DeadLetter == "" {
					found = true
					if f.DeadLettered != "invalid-payload" {
						t.Errorf("the original shows dead-lettered %q, want %q", f.DeadLettered, "invalid-payload")
					}
				}
			}
			if !found {
				t.Fatalf("no original in the flow: %+v", s.Flow)
			}
		})
	}
}
