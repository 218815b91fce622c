package bookingservice

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"example.com/myevents/capstone/internal/outbox"
)

// Group commit (labs/14-batching, in the service). With a SQL store, a
// booking's durability costs a commit, and a commit costs an fsync: one
// per booking would set the service's pace at the disk's, however many
// clients wait. So the booking requests hand their bookings to one
// goroutine, the committer, and wait. It takes the first, adds what else is
// waiting (up to Options.Group bookings, for up to Options.GroupWait after
// the first), sells them all in one transaction (GroupBooker.BookMany) and
// only after the commit answers each request: 201 or 409, in arrival order
// against the seats. A failed transaction fails every request of its group,
// and none of them is stored.

// DefaultGroup is how many bookings one transaction sells at most, by
// default.
const DefaultGroup = 64

// errStopped answers a booking that arrives after Close.
var errStopped = errors.New("bookingservice: stopped")

// groupTimeout bounds one group transaction. The requests of a group wait
// for it whatever their clients do: once committed, a booking's event.booked
// must be published by its request. A request may wait up to
// service.RequestDeadline to join a group, then this long for its commit:
// together well below the server's write timeout (30 s), so that the
// answer, a 201 or a 503 with Retry-After, is written. (At 30 s it was not:
// a client whose booking met a locked table got no answer at all.)
const groupTimeout = 10 * time.Second

// committer sells the bookings of concurrent requests in groups.
type committer struct {
	store GroupBooker
	marks marks
	max   int
	wait  time.Duration

	reqs     chan *waiting
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// waiting is one request's booking, and its answer once done is closed.
type waiting struct {
	b    Booking
	res  BookResult
	done chan struct{}
}

// marks are the outbox marks a group writes along: the Publisher's.
type marks interface {
	TakeMarks() []int64
	ReturnMarks(ids []int64)
}

// markLinger is how long the Publisher leaves its marks for the next group
// to take, before it writes them itself (when no booking comes).
const markLinger = 50 * time.Millisecond

func newCommitter(store GroupBooker, m marks, max int, wait time.Duration) *committer {
	c := &committer{
		store: store, marks: m, max: max, wait: wait,
		reqs: make(chan *waiting),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go c.run()
	return c
}

// book sells b in the next group and returns its answer, as Store.Book.
func (c *committer) book(ctx context.Context, b Booking) (outbox.Message, error) {
	w := &waiting{b: b, done: make(chan struct{})}
	select {
	case c.reqs <- w:
	case <-c.stop:
		return outbox.Message{}, errStopped
	case <-ctx.Done():
		return outbox.Message{}, fmt.Errorf("booking: %w", ctx.Err()) // nothing written
	}
	<-w.done
	return w.res.Msg, w.res.Err
}

// close stops the committer after the group it is writing.
func (c *committer) close() {
	c.stopOnce.Do(func() { close(c.stop) })
	<-c.done
}

// run collects and commits groups until close.
func (c *committer) run() {
	defer close(c.done)
	group := make([]*waiting, 0, c.max)
	for {
		select {
		case w := <-c.reqs:
			group = append(group[:0], w)
		case <-c.stop:
			return
		}
		group = c.collect(group)
		c.commit(group)
	}
}

// collect adds to group what else is waiting: up to c.max bookings, for up
// to c.wait after the first. With no wait it takes only the requests that
// are waiting already; under load that is plenty, because requests pile up
// while the previous group commits.
func (c *committer) collect(group []*waiting) []*waiting {
	var timeout <-chan time.Time
	if c.wait > 0 {
		t := time.NewTimer(c.wait)
		defer t.Stop()
		timeout = t.C
	}
	for len(group) < c.max {
		if timeout == nil {
			select {
			case w := <-c.reqs:
				group = append(group, w)
				continue
			default:
				return group
			}
		}
		select {
		case w := <-c.reqs:
			group = append(group, w)
		case <-timeout:
			return group
		}
	}
	return group
}

// commit sells a group in one transaction and then answers each request.
func (c *committer) commit(group []*waiting) {
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	bs := make([]Booking, len(group))
	for i, w := range group {
		bs[i] = w.b
	}
	sent := c.marks.TakeMarks()
	res, err := c.store.BookMany(ctx, bs, sent)
	if err != nil {
		c.marks.ReturnMarks(sent)
	}
	for i, w := range group {
		if err != nil {
			w.res = BookResult{Err: fmt.Errorf("booking in a group of %d: %w", len(group), err)}
		} else {
			w.res = res[i]
		}
		close(w.done)
	}
}

// ownBookings remembers the bookings this instance sold recently, so that
// their event.booked, heard back from the broker, costs no write: each is
// in the store already, committed before it was emitted. Only the first
// delivery is skipped (take forgets the ID); a redelivery, a replay after a
// restart or a booking that fell out of the memory (the oldest go first
// beyond ownMax) goes through the store, which applies it by ID, once.
type ownBookings struct {
	mu   sync.Mutex
	ids  map[string]struct{}
	ring []string // the IDs in the order they came, to forget the oldest
	next int
}

// ownMax is how many bookings ownBookings remembers: minutes of bookings
// at the rates measured here, and a few MB.
const ownMax = 1 << 16

func (o *ownBookings) add(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ids == nil {
		o.ids = make(map[string]struct{})
		o.ring = make([]string, ownMax)
	}
	if old := o.ring[o.next]; old != "" {
		delete(o.ids, old)
	}
	o.ring[o.next] = id
	o.next = (o.next + 1) % ownMax
	o.ids[id] = struct{}{}
}

// take reports whether id is one of ours not heard back yet, and forgets it.
func (o *ownBookings) take(id string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.ids[id]; !ok {
		return false
	}
	delete(o.ids, id)
	return true
}

// reserve sells b: through the committer with a group-capable store, else
// with Store.Book. A booking sold with an outbox is remembered as ours.
func (s *Service) reserve(ctx context.Context, b Booking) (outbox.Message, error) {
	var (
		msg outbox.Message
		err error
	)
	if s.group != nil {
		msg, err = s.group.book(ctx, b)
	} else {
		msg, err = s.store.Book(ctx, b)
	}
	if err == nil && s.own != nil {
		s.own.add(b.ID)
	}
	return msg, err
}

// The 201 after the commit. With an outbox, a committed booking's
// event.booked is as durable as the booking: the outbox row was committed
// with it, and the relay sends it (at least once) whatever happens to the
// emit, across broker outages and restarts (docs/reliability.md). So with
// group commit the request answers as soon as its group is committed and
// hands the emit to a goroutine of its own; the emits of many requests are
// in flight together on the emitter's channel, a window of confirms. At
// most maxEmits are in flight: beyond that a request waits for a slot,
// which is the backpressure when the broker is slower than the store.
// Without an outbox (the memory store) the broker is the only durable
// record, and the request still waits for the confirm.

// maxEmits bounds the emits in flight.
const maxEmits = 256

// emits are the emits in flight.
type emits struct {
	slots chan struct{}
	wg    sync.WaitGroup
}

func newEmits() *emits { return &emits{slots: make(chan struct{}, maxEmits)} }

// wait waits for the emits in flight.
func (e *emits) wait() { e.wg.Wait() }

// Close stops the committer, waits for the emits in flight and then stops
// the skeleton's outbox relay (unsent events stay in the outbox for the
// next start). Call it after the HTTP server and the listener have
// stopped.
func (s *Service) Close() error {
	if s.group != nil {
		s.group.close()
	}
	if s.emits != nil {
		s.emits.wait()
	}
	return s.Skeleton.Close()
}

// publish hands msg to the broker: in the background when the outbox holds
// it, else (and with Group 1) before returning, as Publisher.Publish.
func (s *Service) publish(ctx context.Context, msg outbox.Message) error {
	if s.emits == nil {
		return s.Publish(ctx, msg)
	}
	s.emits.slots <- struct{}{}
	s.emits.wg.Add(1)
	go func() {
		defer func() {
			<-s.emits.slots
			s.emits.wg.Done()
		}()
		// With an outbox Publish never fails: a refused event stays in the
		// outbox for the relay.
		_ = s.Publish(context.WithoutCancel(ctx), msg)
	}()
	return nil
}
