package servicetest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/memory"
	"example.com/myevents/contracts"
)

// recordingTB is a testing.TB whose cleanups run when the test says and
// whose failures are recorded, not reported: a test of a test helper.
type recordingTB struct {
	testing.TB
	cleanups []func()
	failures []string
}

func (r *recordingTB) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recordingTB) Errorf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

// end runs the cleanups, last registered first, as a test's end does.
func (r *recordingTB) end() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func ignore(context.Context, contracts.Event) error { return nil }

// TestListenAcceptsATestThatEndsFirst: a test may end before Listen's
// goroutine begins (one that checks /healthz and nothing else). Close
// then comes first and Listen returns msgqueue.ErrClosed, as the
// listeners' contract says; that is not the test's failure.
func TestListenAcceptsATestThatEndsFirst(t *testing.T) {
	l, err := memory.New().Listener("q", []string{contracts.EventBookedName})
	if err != nil {
		t.Fatal(err)
	}
	l.Close() // the test ended before Listen began
	rec := &recordingTB{TB: t}
	servicetest.Listen(rec, l, ignore)
	rec.end()
	if len(rec.failures) > 0 {
		t.Errorf("Listen after an early Close failed the test: %q", rec.failures)
	}
}

// refusing is a listener whose Listen fails at once with err.
type refusing struct{ err error }

func (r refusing) Listen(context.Context, msgqueue.Handler, ...string) error { return r.err }
func (r refusing) Health(context.Context) error                              { return nil }
func (r refusing) Close() error                                              { return nil }

// TestListenReportsListenErrors: any other error of Listen fails the
// test.
func TestListenReportsListenErrors(t *testing.T) {
	rec := &recordingTB{TB: t}
	servicetest.Listen(rec, refusing{errors.New("the queue is gone")}, ignore)
	rec.end()
	if len(rec.failures) != 1 {
		t.Errorf("Listen's refusal reported %d failure(s), want 1: %q", len(rec.failures), rec.failures)
	}
}
