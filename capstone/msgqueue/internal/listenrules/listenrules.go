// Package listenrules keeps the rules every msgqueue Listener shares, so
// that the memory, AMQP and Kafka transports cannot drift apart: one Listen
// at a time (and another after it returned), none after Close, Close
// waiting for the running Listen, and Listen refusing event names the
// listener was not built for.
package listenrules

import (
	"context"
	"fmt"
	"sync"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
)

// Lifecycle is the Listen/Close state of one listener. A transport's
// Listener keeps one in a field named life (the zero value is ready),
// calls Begin at the start of Listen and Close in its Close.
type Lifecycle struct {
	mu        sync.Mutex
	closed    bool
	listening bool
	closing   context.Context    // cancelled by Close; made on first use
	cancel    context.CancelFunc // cancels closing
	done      chan struct{}      // closed when the running Listen returns
}

// closingLocked returns the context Close cancels, making it if needed.
func (c *Lifecycle) closingLocked() context.Context {
	if c.closing == nil {
		c.closing, c.cancel = context.WithCancel(context.Background())
	}
	return c.closing
}

// Closing is closed once Close has been called: a running Listen selects on
// it to stop.
func (c *Lifecycle) Closing() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closingLocked().Done()
}

// Closed reports whether Close has been called.
func (c *Lifecycle) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Begin starts a Listen; where names the listener in errors (`queue
// "bookingservice"`). After Close it returns an error wrapping
// msgqueue.ErrClosed, and while another Listen runs an error saying so.
// Otherwise it returns stop, a context that ends when ctx ends or Close is
// called, and end, which the caller must call when Listen returns; then
// Listen may be called again.
func (c *Lifecycle) Begin(ctx context.Context, where string) (stop context.Context, end func(), err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return nil, nil, fmt.Errorf("listening on %s: %w", where, msgqueue.ErrClosed)
	case c.listening:
		return nil, nil, fmt.Errorf("listening on %s: Listen is already running", where)
	}
	c.listening = true
	done := make(chan struct{})
	c.done = done
	stop, cancel := context.WithCancel(ctx)
	unhook := context.AfterFunc(c.closingLocked(), cancel)
	return stop, func() {
		unhook()
		cancel()
		c.mu.Lock()
		c.listening = false
		c.mu.Unlock()
		close(done)
	}, nil
}

// Close marks the listener closed and closes Closing (which ends every
// stop context Begin returned). It reports whether this was the first
// call; later calls change nothing.
func (c *Lifecycle) Close() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.closed = true
	c.closingLocked()
	c.cancel()
	return true
}

// Wait returns once the running Listen, if any, has returned.
func (c *Lifecycle) Wait() {
	c.mu.Lock()
	done := c.done
	c.mu.Unlock()
	if done != nil {
		<-done
	}
}

// Built checks the event names a listener is built for: at least one,
// each with a contract (another could never be decoded). where names the
// listener in errors (`queue "bookingservice"`). It returns a copy.
func Built(where string, names []string) ([]string, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("building the listener for %s: no event names given", where)
	}
	for _, n := range names {
		if _, err := contracts.New(n); err != nil {
			return nil, fmt.Errorf("building the listener for %s: %w", where, err)
		}
	}
	return append([]string(nil), names...), nil
}

// Filter turns the names given to Listen into a set: all of built when
// names is empty, otherwise names, each of which must be in built.
func Filter(built, names []string) (map[string]bool, error) {
	if len(names) == 0 {
		names = built
	}
	known := make(map[string]bool, len(built))
	for _, n := range built {
		known[n] = true
	}
	set := make(map[string]bool, len(names))
	for _, n := range names {
		if !known[n] {
			return nil, fmt.Errorf("%s is not among the events it was built for, %v", n, built)
		}
		set[n] = true
	}
	return set, nil
}
