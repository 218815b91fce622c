package msgqueue

import (
	"fmt"
	"sync"
)

// Lifecycle keeps the rules every Listener shares: one Listen at a time,
// none after Close, and Close waiting for the running Listen. A transport's
// Listener embeds one (the zero value is ready) and calls Begin at the start
// of Listen and Close in its Close.
type Lifecycle struct {
	mu        sync.Mutex
	closed    bool
	listening bool
	closing   chan struct{} // closed by Close; made on first use
	done      chan struct{} // closed when the running Listen returns
}

// closingLocked returns the closing channel, making it if needed.
func (c *Lifecycle) closingLocked() chan struct{} {
	if c.closing == nil {
		c.closing = make(chan struct{})
	}
	return c.closing
}

// Closing is closed once Close has been called: a running Listen selects on
// it to stop.
func (c *Lifecycle) Closing() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closingLocked()
}

// Closed reports whether Close has been called.
func (c *Lifecycle) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Begin starts a Listen; where names the listener in errors (`queue
// "bookingservice"`). After Close it returns an error wrapping ErrClosed,
// and while another Listen runs an error saying so. Otherwise the caller
// must call end when Listen returns.
func (c *Lifecycle) Begin(where string) (end func(), err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return nil, fmt.Errorf("listening on %s: %w", where, ErrClosed)
	case c.listening:
		return nil, fmt.Errorf("listening on %s: Listen is already running", where)
	}
	c.listening = true
	done := make(chan struct{})
	c.done = done
	return func() {
		c.mu.Lock()
		c.listening = false
		c.mu.Unlock()
		close(done)
	}, nil
}

// Close marks the listener closed and closes Closing. It reports whether
// this was the first call; later calls change nothing.
func (c *Lifecycle) Close() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.closed = true
	close(c.closingLocked())
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
