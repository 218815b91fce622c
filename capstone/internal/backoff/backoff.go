// Package backoff is the one retry backoff of the capstone: waits that
// double from a first one up to a longest one. The AMQP transport uses it
// to reconnect and to resend, every transport to deliver a failed message
// again, the Kafka listener to retry a dead-letter write, and the outbox
// relay to retry an emit.
//
// It is a few lines rather than a library (github.com/cenkalti/backoff/v4
// is in go.sum through testcontainers): every caller counts its failures
// already (a delivery count, an attempt number, the outbox's attempts
// column), and a pure function of that count is easy to test and needs no
// state per message; cenkalti's ExponentialBackOff is a stateful ticker
// with an elapsed-time limit that each caller would have to switch off.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy is a backoff: First after the first failure, doubling with each
// failure in a row up to Longest. With Jitter, every wait is stretched by up
// to a quarter at random, so that many clients that lost the same broker do
// not come back in lockstep.
type Policy struct {
	First, Longest time.Duration
	Jitter         bool
}

// Delay is the wait after the n-th failure in a row (n >= 1; smaller n
// count as 1): First doubled n-1 times, at most Longest.
func (p Policy) Delay(n int) time.Duration {
	d := max(p.First, 0)
	for i := 1; i < n && d < p.Longest; i++ {
		d *= 2
	}
	d = min(d, max(p.Longest, p.First))
	if p.Jitter && d > 0 {
		d += time.Duration(rand.Int64N(int64(d)/4 + 1))
	}
	return d
}

// Sleep waits d; it returns false, at once, when ctx ends first.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
