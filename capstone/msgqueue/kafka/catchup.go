package kafka

import (
	"fmt"
	"strings"
	"sync"
)

// catchUp closes done once every expected partition has been processed up
// to its target offset.
type catchUp struct {
	mu      sync.Mutex
	pending map[int32]int64 // partition -> offset to reach; nil until expect
	done    chan struct{}
	closed  bool
}

func newCatchUp() *catchUp { return &catchUp{done: make(chan struct{})} }

// expect sets the partitions to wait for and the offset each must reach
// (its last stable offset: one past its last record, transaction markers
// included; tail.go). It replaces an earlier
// expectation that was not met.
func (c *catchUp) expect(targets map[int32]int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.pending = make(map[int32]int64, len(targets))
	for p, t := range targets {
		c.pending[p] = t
	}
	c.check()
}

// reached records that partition p has processed every record below next.
func (c *catchUp) reached(p int32, next int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if t, ok := c.pending[p]; ok && next >= t {
		delete(c.pending, p)
		c.check()
	}
}

// target returns the offset partition p must still reach, and false when
// it is not waited for (caught up, or never expected).
func (c *catchUp) target(p int32) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.pending[p]
	return t, ok && !c.closed
}

func (c *catchUp) check() {
	if c.pending != nil && len(c.pending) == 0 {
		c.closed = true
		close(c.done)
	}
}

// describe is for test failure messages and logs.
func (c *catchUp) describe() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return "caught up"
	}
	var b strings.Builder
	for p, t := range c.pending {
		fmt.Fprintf(&b, "p%d<%d ", p, t)
	}
	return "waiting for " + strings.TrimSpace(b.String())
}
