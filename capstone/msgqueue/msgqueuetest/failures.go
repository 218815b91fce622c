package msgqueuetest

import (
	"errors"
	"fmt"
	"testing"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
)

// handlerErrorRedelivers: a handler error means the event comes again.
func (s *suite) handlerErrorRedelivers(t *testing.T) {
	_, l, em := s.open(t, contracts.EventBookedName)

	const failing, failures = "retry-b03", 2
	want := map[string]bool{}
	var evs []contracts.Event
	for i := 1; i <= 6; i++ {
		b := booked(fmt.Sprintf("retry-b%02d", i), fmt.Sprintf("retry-key-%d", i), 1)
		evs = append(evs, b)
		want[b.ID] = true
	}
	emitAll(t, em, s.tr.Timeout, evs...)

	// Refuse one event twice, with an ordinary (not permanent) error.
	rec := newRecorder(func(ev contracts.Event, n int) error {
		if EventID(ev) == failing && n <= failures {
			return fmt.Errorf("simulated failure %d of %s", n, failing)
		}
		return nil
	})
	listen(t, l, rec.handle)
	rec.waitAll(t, s.tr.Timeout, want)
	if got := rec.callsFor(failing); got != failures+1 {
		t.Errorf("handler calls for %s = %d, want %d (%d failures, then accepted)", failing, got, failures+1, failures)
	}
}

// deadLetters: poison messages and Permanent errors go to the dead letters
// and the listener carries on.
func (s *suite) deadLetters(t *testing.T) {
	env := s.tr.NewEnv(t)
	if env.DeadLetters == nil {
		t.Skip("the transport has no DeadLetters hook")
	}
	l := newListener(t, env, contracts.Names()...)
	em := newEmitter(t, env)

	// Good events, then poison of every supported kind and an event the
	// handler refuses for good, then more good events.
	const refused = "dlq-refused"
	want := map[string]bool{}
	goods := func(from, to int) {
		for i := from; i <= to; i++ {
			b := booked(fmt.Sprintf("dlq-b%02d", i), "dlq-key", i)
			want[b.ID] = true
			emitAll(t, em, s.tr.Timeout, b)
		}
	}
	goods(1, 3)
	wantDead := map[string]bool{refused: true}
	if env.InjectPoison != nil {
		for _, kind := range env.Poison {
			id := "dlq-poison-" + string(kind)
			if err := env.InjectPoison(t.Context(), kind, id); err != nil {
				t.Fatalf("injecting %s poison: %v", kind, err)
			}
			wantDead[id] = true
		}
	}
	emitAll(t, em, s.tr.Timeout, booked(refused, "dlq-key", 4))
	goods(5, 8)

	rec := newRecorder(func(ev contracts.Event, _ int) error {
		if EventID(ev) == refused {
			return msgqueue.Permanent(errors.New("refused for good by the test"))
		}
		return nil
	})
	listen(t, l, rec.handle)
	rec.waitAll(t, s.tr.Timeout, want)

	// The dead letters hold the poison (by message ID) and the refused
	// event (by its body).
	if err := s.waitDeadLetters(t, env, wantDead); err != nil {
		t.Error(err)
	}
	if n := rec.callsFor(refused); n != 1 {
		t.Errorf("handler calls for the permanently refused %s = %d, want 1", refused, n)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for id := range rec.calls {
		if len(id) > len("dlq-poison-") && id[:len("dlq-poison-")] == "dlq-poison-" {
			t.Errorf("the handler was called with poison message %s", id)
		}
	}
}

// decodeDeadLetter decodes a dead letter's body as event JSON or as an
// envelope; nil when neither works.
func decodeDeadLetter(dl DeadLetter) contracts.Event {
	if ev, err := contracts.Decode(dl.Name, dl.Body); err == nil {
		return ev
	}
	if _, ev, err := contracts.Unwrap(dl.Body); err == nil {
		return ev
	}
	return nil
}

// waitDeadLetters polls env.DeadLetters until it holds every message of
// want, by message ID or by the ID of the event in its body.
func (s *suite) waitDeadLetters(t *testing.T, env *Env, want map[string]bool) error {
	t.Helper()
	return poll(t.Context(), s.tr.Timeout, func() error {
		dls, err := env.DeadLetters(t.Context())
		if err != nil {
			return fmt.Errorf("reading dead letters: %w", err)
		}
		got := map[string]bool{}
		for _, dl := range dls {
			if want[dl.ID] {
				got[dl.ID] = true
			}
			if ev := decodeDeadLetter(dl); ev != nil {
				got[EventID(ev)] = true
			}
		}
		if missing, _ := diff(want, got); len(missing) > 0 {
			return fmt.Errorf("%d of %d dead letters missing: %s", len(missing), len(want), preview(missing))
		}
		return nil
	})
}

// deliveryLimitCountsDeliveries: an event whose handler always fails is
// handed over exactly Env.DeliveryLimit times and then dead-lettered; the
// event behind it arrives.
func (s *suite) deliveryLimitCountsDeliveries(t *testing.T) {
	env := s.tr.NewEnv(t)
	if env.DeliveryLimit < 1 {
		t.Skip("the transport's Env gives no DeliveryLimit")
	}
	l := newListener(t, env, contracts.EventBookedName)
	em := newEmitter(t, env)

	const failing, fine = "limit-fails", "limit-fine"
	emitAll(t, em, s.tr.Timeout, booked(failing, "limit-key-1", 1), booked(fine, "limit-key-2", 1))
	rec := newRecorder(func(ev contracts.Event, _ int) error {
		if EventID(ev) == failing {
			return errors.New("the handler always fails for this one")
		}
		return nil
	})
	listen(t, l, rec.handle)
	rec.waitAll(t, s.tr.Timeout, map[string]bool{fine: true})

	// Once dead-lettered, the failing event is never handed over again:
	// the count is final.
	err := poll(t.Context(), s.tr.Timeout, func() error {
		if n := rec.callsFor(failing); n < env.DeliveryLimit {
			return fmt.Errorf("%s was handed over %d times so far, want %d", failing, n, env.DeliveryLimit)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if env.DeadLetters != nil {
		if err := s.waitDeadLetters(t, env, map[string]bool{failing: true}); err != nil {
			t.Error(err)
		}
	}
	if n := rec.callsFor(failing); n != env.DeliveryLimit {
		t.Errorf("handler calls for %s = %d, want the delivery limit, %d", failing, n, env.DeliveryLimit)
	}
}

// unavailableIsNotCounted: a handler whose store is down (it answers
// msgqueue.Unavailable) more often than the delivery limit allows does not
// lose the event to the dead letters: it gets it again until it accepts
// it, the events behind it follow, and Health says the listener cannot
// make progress meanwhile.
func (s *suite) unavailableIsNotCounted(t *testing.T) {
	env := s.tr.NewEnv(t)
	if env.DeliveryLimit < 1 {
		t.Skip("the transport's Env gives no DeliveryLimit")
	}
	l := newListener(t, env, contracts.EventBookedName)
	em := newEmitter(t, env)

	const first, second = "down-1", "down-2"
	emitAll(t, em, s.tr.Timeout, booked(first, "down-key", 1), booked(second, "down-key", 2))
	downFor := env.DeliveryLimit + 2
	up := make(chan struct{})
	rec := newRecorder(func(ev contracts.Event, n int) error {
		if EventID(ev) == first && n <= downFor {
			if n == downFor {
				<-up // stay down until the test has seen Health fail
			}
			return msgqueue.Unavailable(fmt.Errorf("simulated store outage, call %d", n))
		}
		return nil
	})
	listen(t, l, rec.handle)
	err := poll(t.Context(), s.tr.Timeout, func() error {
		if err := l.Health(t.Context()); err == nil {
			return fmt.Errorf("health is nil after %d unavailable calls, want the handler's outage", rec.callsFor(first))
		}
		return nil
	})
	close(up)
	if err != nil {
		t.Fatal(err)
	}
	rec.waitAll(t, s.tr.Timeout, map[string]bool{first: true, second: true})
	if n := rec.callsFor(first); n != downFor+1 {
		t.Errorf("handler calls for %s = %d, want %d (%d unavailable, then accepted)", first, n, downFor+1, downFor)
	}
	if err := poll(t.Context(), s.tr.Timeout, func() error { return l.Health(t.Context()) }); err != nil {
		t.Errorf("Health after the handler accepted: %v", err)
	}
	if env.DeadLetters != nil {
		dead, err := env.DeadLetters(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(dead) > 0 {
			t.Errorf("dead letters %v, want none: an unavailable handler is not the event's fault", dead)
		}
	}
}
