package live

import (
	"encoding/json"
	"fmt"
	"time"
)

// snapshot is the whole state the page shows, sent as JSON at every
// change. Times are Unix milliseconds.
type snapshot struct {
	Now       int64           `json:"now"`
	Broker    BrokerView      `json:"broker"`
	Services  []serviceView   `json:"services"`
	Run       runView         `json:"run"`
	Concerts  []concertView   `json:"concerts"`
	Flow      []flowView      `json:"flow"` // newest first
	FlowTotal int             `json:"flowTotal"`
	Activity  []activity      `json:"activity"` // newest first
	Busy      string          `json:"busy,omitempty"`
	Hold      string          `json:"hold,omitempty"`
	Slow      bool            `json:"slow"`
	Pace      string          `json:"pace"`
	Controls  map[string]bool `json:"controls"` // which controls make sense now
}

type serviceView struct {
	Key     string       `json:"key"`
	Name    string       `json:"name"`
	URL     string       `json:"url"`
	State   string       `json:"state"`
	Detail  string       `json:"detail,omitempty"`
	History []transition `json:"history"`
}

// runView is BookingService's current run: what it had to go through at
// its start and how far it got.
type runView struct {
	Number  int    `json:"number"`
	Started int64  `json:"started"`
	Waiting int64  `json:"waiting"`
	Applied int64  `json:"applied"`
	Done    int64  `json:"done,omitempty"`
	Pace    string `json:"pace,omitempty"`
}

type concertView struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Capacity  int    `json:"capacity"`
	Booked    int    `json:"booked"`
	Available int    `json:"available"`
	Status    string `json:"status"`
	Known     bool   `json:"known"`
}

type flowView struct {
	Seq          int64   `json:"seq"`
	Name         string  `json:"name"`
	ID           string  `json:"id,omitempty"`
	Key          string  `json:"key,omitempty"`
	Summary      string  `json:"summary"`
	Where        string  `json:"where"`
	Emitted      int64   `json:"emitted"`
	Applied      []int64 `json:"applied"`
	DeadLettered string  `json:"deadLettered,omitempty"` // on an original
	DeadLetter   string  `json:"deadLetter,omitempty"`   // on a copy: the reason
	Error        string  `json:"error,omitempty"`        // on a copy: the handler's or decoder's error
}

// snapshotJSON encodes the state now.
func (v *View) snapshotJSON() []byte {
	v.mu.Lock()
	s := v.snapshotLocked()
	v.mu.Unlock()
	b, err := json.Marshal(s)
	if err != nil { // only plain values: cannot happen
		return []byte(`{"error":"encoding the state failed"}`)
	}
	return b
}

func (v *View) snapshotLocked() snapshot {
	s := snapshot{
		Now:       time.Now().UnixMilli(),
		Broker:    v.broker,
		FlowTotal: v.dropped + len(v.records),
		Busy:      v.busy,
		Hold:      v.hold,
		Slow:      v.slow,
		Pace:      fmt.Sprint(defaultPace),
		Services:  []serviceView{},
		Concerts:  []concertView{},
		Flow:      []flowView{},
		Activity:  []activity{},
	}
	for _, key := range []string{EventService, BookingService} {
		if sv := v.services[key]; sv != nil {
			s.Services = append(s.Services, serviceView{
				Key: key, Name: sv.name, URL: sv.url, State: sv.state, Detail: sv.detail,
				History: append([]transition{}, sv.history...),
			})
		}
	}
	r := v.run
	s.Run = runView{Number: r.number, Started: r.started.UnixMilli(), Waiting: r.waiting, Applied: r.applied}
	if !r.done.IsZero() {
		s.Run.Done = r.done.UnixMilli()
	}
	if r.pace > 0 {
		s.Run.Pace = fmt.Sprint(r.pace)
	}

	for i := len(v.concerts) - 1; i >= 0; i-- {
		c := v.concerts[i]
		s.Concerts = append(s.Concerts, concertView{
			ID: c.id, Name: c.name, Capacity: c.capacity, Booked: c.booked,
			Available: c.avail, Status: c.status, Known: c.known,
		})
	}

	first := max(0, len(v.records)-maxFlow)
	for i := len(v.records) - 1; i >= first; i-- {
		s.Flow = append(s.Flow, v.flowLocked(v.records[i]))
	}
	for i := len(v.activity) - 1; i >= 0; i-- {
		s.Activity = append(s.Activity, v.activity[i])
	}

	up := func(key string) bool { return v.services[key] != nil && v.services[key].state != stateDown }
	s.Controls = map[string]bool{
		"start-eventservice":   !up(EventService),
		"stop-eventservice":    up(EventService),
		"start-bookingservice": !up(BookingService),
		"stop-bookingservice":  up(BookingService),
		// A restart stops it first.
		"restart-bookingservice": up(BookingService),
	}
	return s
}

// flowLocked is how the page shows one record.
func (v *View) flowLocked(e *entry) flowView {
	f := flowView{
		Seq: e.seq, Name: e.Name, ID: e.ID, Key: e.Key, Summary: e.Summary,
		Emitted: e.Emitted.UnixMilli(), DeadLettered: e.deadLettered, Applied: []int64{},
	}
	if f.Name == "" {
		f.Name = "(no event name)"
	}
	switch dl := e.DeadLetter; {
	case dl != nil && e.Topic != "":
		f.Where = fmt.Sprintf("%s · partition %d · offset %d ← events partition %d offset %d", e.Topic, e.Partition, e.Offset, dl.Partition, dl.Offset)
	case dl != nil:
		f.Where = "→ " + e.Queue
	case e.Topic != "":
		f.Where = fmt.Sprintf("%s · partition %d · offset %d", e.Topic, e.Partition, e.Offset)
	default:
		f.Where = fmt.Sprintf("%s · key %s → %s", e.Exchange, e.RoutingKey, e.Queue)
	}
	if dl := e.DeadLetter; dl != nil {
		f.DeadLetter, f.Error = dl.Reason, dl.Error
		return f
	}
	if e.ID != "" {
		for _, t := range v.applied[eventKey(e.Name, e.ID)] {
			// A time before the record was written belongs to an earlier
			// copy of the same event (a resend).
			if !t.Before(e.Emitted.Add(-time.Second)) {
				f.Applied = append(f.Applied, t.UnixMilli())
			}
		}
	}
	return f
}
