package msgqueuetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
)

// EventID returns the ID the suite tracks an event by: the ID field of every
// contract type (for EventBooked the booking ID, not the partition key).
func EventID(ev contracts.Event) string {
	v := reflect.Indirect(reflect.ValueOf(ev))
	if v.Kind() != reflect.Struct {
		return ""
	}
	if f := v.FieldByName("ID"); f.Kind() == reflect.String {
		return f.String()
	}
	return ""
}

// fixedTime keeps sample events comparable after a JSON round trip.
var fixedTime = time.Date(2026, time.March, 14, 19, 30, 0, 0, time.UTC)

// BulkyLocation is a valid location.created whose JSON is over
// msgqueue.MaxMessageSize: a JSON encoder writes each "<" of its hall names
// as the six bytes \u003c.
func BulkyLocation() *contracts.LocationCreated {
	loc := &contracts.LocationCreated{ID: "loc-bulky", Name: "Bulky"}
	for i := range contracts.MaxHalls {
		name := fmt.Sprintf("%03d", i) + strings.Repeat("<", contracts.MaxTextBytes-3)
		loc.Halls = append(loc.Halls, contracts.Hall{Name: name, Capacity: 1})
	}
	return loc
}

// LocationAtTheLimit returns a valid location called id whose Kafka
// envelope is exactly msgqueue.MaxMessageSize bytes, so that its record,
// with its key, is over the limit: halls named with "<", which JSON writes
// as six bytes, then an address of plain letters to fill the rest.
func LocationAtTheLimit(id string) (*contracts.LocationCreated, error) {
	loc := &contracts.LocationCreated{ID: id, Name: "Bulky", Country: "DE", OpenTime: 9, CloseTime: 23}
	size := func() int {
		v, err := contracts.Wrap(loc)
		if err != nil {
			return math.MaxInt
		}
		return len(v)
	}
	const escaped = len(`\u003c`) // the bytes of one "<"
	name := strings.Repeat("<", contracts.MaxTextBytes-3)
	for i := 0; size()+escaped*contracts.MaxTextBytes+contracts.MaxTextBytes/2 < msgqueue.MaxMessageSize; i++ {
		loc.Halls = append(loc.Halls, contracts.Hall{Name: fmt.Sprintf("%03d", i) + name, Capacity: 1})
	}
	loc.Halls = append(loc.Halls, contracts.Hall{Name: "last", Capacity: 1})
	last := &loc.Halls[len(loc.Halls)-1]
	for size()+escaped <= msgqueue.MaxMessageSize && len(last.Name) < contracts.MaxTextBytes {
		last.Name += "<"
	}
	if n := msgqueue.MaxMessageSize - size(); n > 0 {
		loc.Address = strings.Repeat("a", n)
	}
	if err := loc.Validate(); err != nil {
		return nil, fmt.Errorf("building a location of %d bytes: %w", msgqueue.MaxMessageSize, err)
	}
	if n := size(); n != msgqueue.MaxMessageSize {
		return nil, fmt.Errorf("building a location of %d bytes: it has %d", msgqueue.MaxMessageSize, n)
	}
	return loc, nil
}

// LocationBodyAtTheLimit returns a valid location called id whose JSON
// body alone is exactly msgqueue.MaxMessageSize bytes: LocationAtTheLimit
// with a longer address. Anything a transport counts beside the body (a
// header, a name, a key) puts its message over the limit.
func LocationBodyAtTheLimit(id string) (*contracts.LocationCreated, error) {
	loc, err := LocationAtTheLimit(id)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(loc)
	if err != nil {
		return nil, err
	}
	loc.Address += strings.Repeat("a", msgqueue.MaxMessageSize-len(body))
	if body, err = json.Marshal(loc); err != nil || len(body) != msgqueue.MaxMessageSize {
		return nil, fmt.Errorf("building a location body of %d bytes: it has %d (%v)", msgqueue.MaxMessageSize, len(body), err)
	}
	if err := loc.Validate(); err != nil {
		return nil, fmt.Errorf("building a location body of %d bytes: %w", msgqueue.MaxMessageSize, err)
	}
	return loc, nil
}

// sample returns a valid event of the named contract type with the given ID.
func sample(name, id string) contracts.Event {
	switch name {
	case contracts.LocationCreatedName:
		return &contracts.LocationCreated{
			ID: id, Name: "Olympiahalle", Address: "Spiridon-Louis-Ring 21",
			Country: "DE", OpenTime: 9, CloseTime: 23,
			Halls: []contracts.Hall{{Name: "Main", Capacity: 12500}, {Name: "Small", Capacity: 800}},
		}
	case contracts.EventCreatedName:
		return &contracts.EventCreated{
			ID: id, Name: "Opera Night", LocationID: "loc-" + id, Hall: "Main", Capacity: 12500,
			StartDate: fixedTime, EndDate: fixedTime.Add(3 * time.Hour),
		}
	case contracts.EventBookedName:
		return booked(id, "event-"+id, 2)
	}
	return nil
}

// booked returns an EventBooked with partition key key; seq goes in Seats so
// that order can be checked.
func booked(id, key string, seq int) *contracts.EventBooked {
	return &contracts.EventBooked{ID: id, EventID: key, UserID: "user-0001", Seats: seq, Date: fixedTime}
}

// recorder is a handler that remembers what it was given.
type recorder struct {
	mu       sync.Mutex
	calls    map[string]int // event ID -> handler calls
	accepted map[string]int // event ID -> calls that returned nil
	order    []contracts.Event
	names    map[string]int // event name -> calls
	// answer decides what the handler returns for the n-th call (from 1)
	// with ev; nil accepts everything.
	answer func(ev contracts.Event, n int) error
}

func newRecorder(answer func(ev contracts.Event, n int) error) *recorder {
	return &recorder{
		calls:    map[string]int{},
		accepted: map[string]int{},
		names:    map[string]int{},
		answer:   answer,
	}
}

// handle is the msgqueue.Handler.
func (r *recorder) handle(_ context.Context, ev contracts.Event) error {
	id := EventID(ev)
	r.mu.Lock()
	r.calls[id]++
	n := r.calls[id]
	r.names[ev.EventName()]++
	r.mu.Unlock()
	var err error
	if r.answer != nil {
		err = r.answer(ev, n)
	}
	if err == nil {
		r.mu.Lock()
		if r.accepted[id] == 0 {
			r.order = append(r.order, ev)
		}
		r.accepted[id]++
		r.mu.Unlock()
	}
	return err
}

// acceptedIDs returns the set of IDs the handler accepted at least once.
func (r *recorder) acceptedIDs() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]bool, len(r.accepted))
	for id := range r.accepted {
		out[id] = true
	}
	return out
}

// uniqueAccepted counts the IDs accepted at least once.
func (r *recorder) uniqueAccepted() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.accepted)
}

// callsFor returns how often the handler was called with id.
func (r *recorder) callsFor(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[id]
}

// totals returns all handler calls and the calls that returned nil.
func (r *recorder) totals() (calls, accepted int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.calls {
		calls += n
	}
	for _, n := range r.accepted {
		accepted += n
	}
	return calls, accepted
}

// waitAll waits until the handler accepted every ID in want, then reports
// missing and extra IDs (extra: accepted but not wanted).
func (r *recorder) waitAll(t *testing.T, timeout time.Duration, want map[string]bool) {
	t.Helper()
	err := poll(t.Context(), timeout, func() error {
		missing, _ := diff(want, r.acceptedIDs())
		if len(missing) > 0 {
			return fmt.Errorf("%d of %d events not received yet", len(missing), len(want))
		}
		return nil
	})
	missing, extra := diff(want, r.acceptedIDs())
	if err != nil || len(extra) > 0 {
		t.Errorf("received events differ from the emitted ones (%v): missing %d %s, extra %d %s",
			err, len(missing), preview(missing), len(extra), preview(extra))
	}
}

// diff returns the IDs of want missing from got, and those in got that want
// lacks, both sorted.
func diff(want, got map[string]bool) (missing, extra []string) {
	for id := range want {
		if !got[id] {
			missing = append(missing, id)
		}
	}
	for id := range got {
		if !want[id] {
			extra = append(extra, id)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return missing, extra
}

// preview shows up to ten IDs.
func preview(ids []string) string {
	if len(ids) > 10 {
		return "[" + strings.Join(ids[:10], " ") + " ...]"
	}
	return "[" + strings.Join(ids, " ") + "]"
}

// poll calls check until it returns nil, ctx ends or timeout passes; it
// returns check's last error in the last two cases.
func poll(ctx context.Context, timeout time.Duration, check func() error) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	interval := 2 * time.Millisecond
	for {
		err := check()
		if err == nil {
			return nil
		}
		tick := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			tick.Stop()
			return fmt.Errorf("%w (%v)", err, ctx.Err())
		case <-deadline.C:
			tick.Stop()
			return fmt.Errorf("%w (still after %v)", err, timeout)
		case <-tick.C:
		}
		if interval < 100*time.Millisecond {
			interval *= 2
		}
	}
}

// open gives a subtest its own Env with a listener for names (built
// first, as the package documentation promises) and an emitter, both
// closed when the subtest ends.
func (s *suite) open(t *testing.T, names ...string) (*Env, msgqueue.Listener, msgqueue.Emitter) {
	t.Helper()
	env := s.tr.NewEnv(t)
	return env, newListener(t, env, names...), newEmitter(t, env)
}

// newListener builds a listener for names and closes it when the test ends.
func newListener(t *testing.T, env *Env, names ...string) msgqueue.Listener {
	t.Helper()
	l, err := env.NewListener(t.Context(), names...)
	if err != nil {
		t.Fatalf("building listener for %v: %v", names, err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("closing listener at cleanup: %v", err)
		}
	})
	return l
}

// newEmitter builds an emitter and closes it when the test ends.
func newEmitter(t *testing.T, env *Env) msgqueue.Emitter {
	t.Helper()
	em, err := env.NewEmitter(t.Context())
	if err != nil {
		t.Fatalf("building emitter: %v", err)
	}
	t.Cleanup(func() {
		if err := em.Close(); err != nil {
			t.Errorf("closing emitter at cleanup: %v", err)
		}
	})
	return em
}

// emitAll emits events one after another and fails the test on the first
// error.
func emitAll(t *testing.T, em msgqueue.Emitter, timeout time.Duration, evs ...contracts.Event) {
	t.Helper()
	for _, ev := range evs {
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		err := em.Emit(ctx, ev)
		cancel()
		if err != nil {
			t.Fatalf("emitting %s %s: %v", ev.EventName(), EventID(ev), err)
		}
	}
}

// running is a Listen call in its own goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

// listen starts l.Listen in a goroutine. The test's cleanup stops it, so a
// test only calls stop to check what Listen returned.
func listen(t *testing.T, l msgqueue.Listener, h msgqueue.Handler, names ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- l.Listen(ctx, h, names...) }()
	t.Cleanup(func() { _ = r.stop(30 * time.Second) })
	return r
}

// errStillListening is returned by stop when Listen did not return in time.
var errStillListening = errors.New("the Listen call did not return after its context was cancelled")

// stop cancels Listen's context and returns what Listen returned. Calling it
// again returns nil.
func (r *running) stop(timeout time.Duration) error {
	r.cancel()
	select {
	case err, ok := <-r.done:
		if !ok {
			return nil
		}
		close(r.done)
		return err
	case <-time.After(timeout):
		return errStillListening
	}
}
