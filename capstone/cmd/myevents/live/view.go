// Package live is the live view of the myevents demo: a web page, served
// by the demo's own process, that shows the system while it runs (the
// services and whether they are up; every event on the broker, where it
// landed and when BookingService applied it; each concert's seats as
// BookingService sees them; BookingService rebuilding its state after a
// restart) and offers controls that replay the lessons.
//
// It looks only from the outside: at the broker, with clients of its own
// (Kafka: a consumer of the events topic and its dead-letter topic, and
// offset requests; RabbitMQ: exclusive tap queues and passive queue
// declares), at the services' HTTP APIs, and at BookingService's broker
// handler through the wrapper its wiring offers (app.Options.WrapHandler),
// to see when an event was applied. It never reads a service's store.
//
// The server uses the standard library only. The page, its script and its
// style are embedded in the binary and fetch nothing else; the page gets
// a JSON snapshot of the state as server-sent events, one per change.
package live

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
)

// Services starts and stops the demo's services; the myevents command
// implements it. service is "eventservice" or "bookingservice".
type Services interface {
	Start(service string) error
	Stop(service string) error
}

// The services, by the names Services takes.
const (
	EventService   = "eventservice"
	BookingService = "bookingservice"
)

// Config is what the view watches and drives.
type Config struct {
	Broker      Broker
	EventsURL   string // EventService's base URL, such as http://127.0.0.1:8181
	BookingsURL string // BookingService's
	Services    Services
	Logger      *slog.Logger
}

// Limits of what the view keeps and shows.
const (
	maxRecords  = 500 // the newest records the view remembers
	maxFlow     = 60  // the newest shown on the page
	maxActivity = 40
	maxConcerts = 12 // the newest concerts, whose seats are shown
	maxApplied  = 8  // apply times kept per event
	maxHistory  = 8  // state changes kept per service
)

// Slow motion: a replay of a few records takes milliseconds, too fast to
// watch. When it is on, BookingService's handler waits before each event
// it goes through at start-up (at most paceBudget in all).
const (
	defaultPace = 250 * time.Millisecond
	paceBudget  = 6 * time.Second
)

// View is the live view. Create it with New, hand Wrap to BookingService's
// wiring, then Connect it once the services and the broker watcher run,
// and serve Handler.
type View struct {
	cfg    Config
	ctx    context.Context // the demo's lifetime: controls run in it
	log    *slog.Logger
	client *http.Client

	actions sync.Mutex // one control at a time

	mu        sync.Mutex
	changed   chan struct{} // closed and replaced at every change
	seq       int64
	records   []*entry
	dropped   int
	byPos     map[string]*entry      // Kafka "partition/offset", AMQP message ID
	early     map[string]string      // dead-letter reasons whose copy came before its original, by position
	applied   map[string][]time.Time // eventKey -> when BookingService applied it
	concerts  []*concert
	byConcert map[string]*concert
	services  map[string]*service
	run       bookingRun
	activity  []activity
	broker    BrokerView
	hold      string // why the controls wait (the story is playing)
	busy      string // the control that runs
	slow      bool
	users     int
	dlCount   int    // dead-lettered copies seen
	dlLast    *entry // the newest one
}

// entry is a record the view keeps.
type entry struct {
	Record
	seq          int64
	deadLettered string // on an original: the reason its copy gave
}

// concert is an event (a concert) BookingService should know, as
// EventService announced it, with what BookingService last said about it.
type concert struct {
	id, name                string
	capacity, booked, avail int
	status                  string // "ok", or why BookingService's answer is missing or old
	known                   bool   // BookingService answered 200 once
}

// service is what the polls say about one service.
type service struct {
	name, url, state, detail string
	history                  []transition
}

type transition struct {
	At    int64  `json:"at"`
	State string `json:"state"`
}

// bookingRun is one run of BookingService, from its start.
type bookingRun struct {
	number  int
	started time.Time
	waiting int64         // what it had to go through (Broker.Waiting) at its start
	applied int64         // events it applied since
	pace    time.Duration // slow motion per event, 0 for none
	done    time.Time     // caught up (Kafka: first 200) or drained (AMQP)
}

type activity struct {
	At   int64  `json:"at"`
	Text string `json:"text"`
	OK   bool   `json:"ok"`
}

// New returns a view with slow motion on.
func New(log *slog.Logger) *View {
	if log == nil {
		log = slog.Default()
	}
	return &View{
		log:       log,
		client:    &http.Client{Timeout: 10 * time.Second},
		changed:   make(chan struct{}),
		byPos:     map[string]*entry{},
		early:     map[string]string{},
		applied:   map[string][]time.Time{},
		byConcert: map[string]*concert{},
		services:  map[string]*service{},
		slow:      true,
	}
}

// Connect tells the view what to watch and drive, and starts probing the
// services and the broker until ctx ends.
func (v *View) Connect(ctx context.Context, cfg Config) {
	if cfg.Logger != nil {
		v.log = cfg.Logger
	}
	v.mu.Lock()
	v.cfg, v.ctx = cfg, ctx
	v.services[EventService] = &service{name: "EventService", url: cfg.EventsURL, state: "starting"}
	v.services[BookingService] = &service{name: "BookingService", url: cfg.BookingsURL, state: "starting"}
	v.mu.Unlock()
	go v.poll(ctx)
}

// Hold makes the controls refuse with why until Release: the story runs
// its own requests and expects nothing else in the log meanwhile.
func (v *View) Hold(why string) { v.set(func() { v.hold = why }) }

// Release lets the controls act again.
func (v *View) Release() { v.set(func() { v.hold = "" }) }

// set changes the state under the lock and tells the pages.
func (v *View) set(f func()) {
	v.mu.Lock()
	f()
	v.bumpLocked()
	v.mu.Unlock()
}

// bumpLocked wakes every page stream; v.mu is held.
func (v *View) bumpLocked() {
	close(v.changed)
	v.changed = make(chan struct{})
}

// changes returns a channel closed at the next change.
func (v *View) changes() <-chan struct{} {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.changed
}

// Add takes a record a broker watcher saw.
func (v *View) Add(r Record) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.seq++
	e := &entry{Record: r, seq: v.seq}
	if dl := r.DeadLetter; dl != nil {
		v.dlCount++
		v.dlLast = e
		pos := position(dl.Partition, dl.Offset, dl.MessageID)
		if orig := v.byPos[pos]; orig != nil {
			orig.deadLettered = dl.Reason
		} else if len(v.early) < maxRecords {
			// Two watchers feed the view: the copy can outrun its original.
			v.early[pos] = dl.Reason
		}
	} else {
		pos := position(r.Partition, r.Offset, r.MessageID)
		v.byPos[pos] = e
		if why, ok := v.early[pos]; ok {
			e.deadLettered = why
			delete(v.early, pos)
		}
	}
	if ev, ok := r.Event.(*contracts.EventCreated); ok && v.byConcert[ev.ID] == nil {
		c := &concert{id: ev.ID, name: ev.Name, capacity: ev.Capacity, avail: ev.Capacity, status: "not asked yet"}
		v.concerts = append(v.concerts, c)
		v.byConcert[ev.ID] = c
		if len(v.concerts) > maxConcerts {
			delete(v.byConcert, v.concerts[0].id)
			v.concerts = v.concerts[1:]
		}
	}
	v.records = append(v.records, e)
	if len(v.records) > maxRecords {
		gone := v.records[0]
		delete(v.byPos, position(gone.Partition, gone.Offset, gone.MessageID))
		delete(v.applied, eventKey(gone.Name, gone.ID))
		v.records = v.records[1:]
		v.dropped++
	}
	v.bumpLocked()
}

// position identifies a message on the broker: a Kafka partition and
// offset of the events topic, or an AMQP message ID.
func position(partition int32, offset int64, messageID string) string {
	if messageID != "" {
		return messageID
	}
	return fmt.Sprintf("%d/%d", partition, offset)
}

// Wrap is an app.Options.WrapHandler for BookingService. Each call is a
// new run of the service: the view asks the broker how much the run has
// to go through first, and, in slow motion, paces the handler until it
// has. The handler it returns notes when each event was applied.
func (v *View) Wrap(next msgqueue.Handler) msgqueue.Handler {
	var waiting int64
	if b := v.cfg.Broker; b != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		waiting, _ = b.Waiting(ctx) // unknown counts as nothing to wait for
		cancel()
	}
	v.mu.Lock()
	v.run = bookingRun{number: v.run.number + 1, started: time.Now(), waiting: waiting}
	// No slow motion while the story plays: it is the terminal's pace.
	if v.slow && v.hold == "" && waiting > 0 {
		v.run.pace = min(defaultPace, paceBudget/time.Duration(waiting))
	}
	if waiting == 0 {
		v.run.done = v.run.started
	}
	run := v.run.number
	v.bumpLocked()
	v.mu.Unlock()

	return func(ctx context.Context, ev contracts.Event) error {
		if d := v.paceOf(run); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		err := next(ctx, ev)
		if err == nil {
			v.noteApplied(run, ev)
		}
		return err
	}
}

// paceOf is how long run's handler waits before the next event.
func (v *View) paceOf(run int) time.Duration {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.run.number != run || !v.run.done.IsZero() || v.run.applied >= v.run.waiting {
		return 0
	}
	return v.run.pace
}

// noteApplied records that BookingService applied ev.
func (v *View) noteApplied(run int, ev contracts.Event) {
	id, _ := describe(ev)
	now := time.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	k := eventKey(ev.EventName(), id)
	times := append(v.applied[k], now)
	if len(times) > maxApplied {
		times = times[len(times)-maxApplied:]
	}
	v.applied[k] = times
	if v.run.number == run {
		v.run.applied++
		// On RabbitMQ the run is done once it went through what waited
		// in its queue; on Kafka once it answers 200 (see observe).
		if v.broker.Kind == "amqp" && v.run.done.IsZero() && v.run.applied >= v.run.waiting {
			v.run.done = now
		}
	}
	v.bumpLocked()
}

// observe records what a poll that asked at asked found a service to be.
func (v *View) observe(key, state, detail string, asked time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.services[key]
	if s == nil {
		return
	}
	if s.state != state {
		s.history = append(s.history, transition{At: time.Now().UnixMilli(), State: state})
		if len(s.history) > maxHistory {
			s.history = s.history[len(s.history)-maxHistory:]
		}
	}
	s.state, s.detail = state, detail
	// A 200 to a question asked before this run started came from the
	// run before.
	if key == BookingService && state == stateUp && v.broker.Kind == "kafka" && v.run.done.IsZero() && asked.After(v.run.started) {
		v.run.done = time.Now()
	}
	v.bumpLocked()
}

// note adds a line to the activity log.
func (v *View) note(ok bool, text string) {
	v.set(func() {
		v.activity = append(v.activity, activity{At: time.Now().UnixMilli(), Text: text, OK: ok})
		if len(v.activity) > maxActivity {
			v.activity = v.activity[len(v.activity)-maxActivity:]
		}
	})
}
