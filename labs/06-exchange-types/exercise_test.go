package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labkit"
)

// more are messages that show where a headers exchange stops: n2 carries
// every header of n1 and one more, and n4 carries x-event-name alone.
var more = []message{
	{id: "n1", key: "event.booked", headers: amqp.Table{"x-event-name": "event.booked", "region": "europe", "source": "web"}},
	{id: "n2", key: "event.booked", headers: amqp.Table{"x-event-name": "event.booked", "region": "europe", "source": "web", "tier": "vip"}},
	{id: "n3", key: "event.created", headers: amqp.Table{"x-event-name": "event.created", "region": "europe", "source": "web"}},
	{id: "n4", key: "location.created", headers: amqp.Table{"x-event-name": "location.created"}},
}

// exerciseCase is one wish, and the exchange types on which some bindings
// give a queue exactly those messages, worked out by hand.
type exerciseCase struct {
	msgs     []message
	want     []string
	possible []string
}

var (
	direct, fanout, topic, headers = amqp.ExchangeDirect, amqp.ExchangeFanout, amqp.ExchangeTopic, amqp.ExchangeHeaders
	kinds                          = []string{direct, fanout, topic, headers}
)

var exerciseCases = []exerciseCase{
	{messages, nil, kinds},
	{messages, every, kinds},
	{messages, []string{"m1", "m2", "m5"}, []string{direct, topic, headers}},
	{messages, []string{"m1", "m3", "m5"}, []string{headers}},
	{messages, []string{"m3", "m4"}, []string{direct, topic, headers}},
	{messages, []string{"m1"}, []string{headers}},                // m5 differs from m1 only in x-event-name
	{messages, []string{"m5"}, []string{direct, topic, headers}}, // and the other way round
	{messages, []string{"m2", "m4"}, []string{headers}},          // asia
	{messages, []string{"m1", "m2", "m3", "m4"}, []string{direct, topic, headers}},
	{more, []string{"n2"}, []string{headers}},
	{more, []string{"n1"}, nil}, // n2 carries all of n1's headers, and its key
	{more, []string{"n1", "n2"}, []string{direct, topic, headers}},
	{more, []string{"n3"}, []string{direct, topic, headers}},
	{more, []string{"n4"}, []string{direct, topic, headers}}, // a binding on x-event-name alone
	{more, []string{"n1", "n2", "n3", "n4"}, kinds},
}

// TestExerciseBindExactly checks the lab's exercise, bindExactly, against
// the real broker. For every exchange type and every case it declares a
// queue and lets bindExactly bind it; then it publishes the messages to the
// exchange and compares what each queue received with what it wanted, or,
// where bindExactly said it cannot be done, checks that it really cannot
// and that the queue was left unbound.
func TestExerciseBindExactly(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	conn := dial(t, rabbit.URL)
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("opening a channel: %v", err)
	}
	if err := ch.Confirm(false /* no-wait */); err != nil {
		t.Fatalf("enabling confirms: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := brokertest.Name(t, "lab06")

	// The hand-written table must agree with the reasons below.
	for _, c := range exerciseCases {
		for _, kind := range kinds {
			if why := whyNot(kind, c.msgs, c.want); (why == "") != slices.Contains(c.possible, kind) {
				t.Fatalf("test table: %s on a %s exchange is listed possible=%t, but whyNot says %q", list(c.want), kind, slices.Contains(c.possible, kind), why)
			}
		}
	}

	// Report at most three wrong cases per type, and the type's rule once.
	wrong := map[string]int{}
	report := func(kind, format string, args ...any) {
		t.Helper()
		if wrong[kind]++; wrong[kind] <= 3 {
			t.Errorf(format, args...)
		}
	}
	for _, kind := range kinds {
		for set, msgs := range [][]message{messages, more} {
			exchange := fmt.Sprintf("%s.%s.%d", prefix, kind, set)
			if err := ch.ExchangeDeclare(exchange, kind,
				false, // durable
				true,  // auto-delete: goes with its last queue
				false, // internal
				false, // no-wait
				nil,   // args
			); err != nil {
				t.Fatalf("declaring exchange %s: %v", exchange, err)
			}
			t.Cleanup(func() { _ = ch.ExchangeDelete(exchange, false, false) })

			// One queue per case, bound by bindExactly.
			type tried struct {
				c     exerciseCase
				queue string
				err   error
			}
			var all []tried
			for _, c := range exerciseCases {
				if !sameMessages(c.msgs, msgs) {
					continue
				}
				q, err := ch.QueueDeclare("",
					false, // durable
					true,  // auto-delete
					true,  // exclusive: gone with the test's connection
					false, // no-wait
					nil,   // args
				)
				if err != nil {
					t.Fatalf("declaring a queue: %v", err)
				}
				err = bindExactly(ch, exchange, kind, q.Name, msgs, c.want)
				if errors.Is(err, labkit.ErrTODO) {
					t.Fatal(err)
				}
				if ch.IsClosed() {
					t.Fatalf("bindExactly(%s, wants %s) closed the channel (%v): did the broker refuse a binding?", kind, list(c.want), err)
				}
				all = append(all, tried{c, q.Name, err})
			}

			// Publish every message, routing key = its key, and wait for
			// the confirms: then each queue holds all it will get.
			for _, m := range msgs {
				dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, m.key,
					false, // mandatory: a message no queue wants is fine here
					false, // immediate
					amqp.Publishing{Headers: m.headers, MessageId: m.id, Body: []byte(m.id)})
				if err != nil {
					t.Fatalf("publishing %s: %v", m.id, err)
				}
				if acked, err := dc.WaitContext(ctx); err != nil || !acked {
					t.Fatalf("confirm of %s: acked %t, %v", m.id, acked, err)
				}
			}

			// Judge each case by what its queue received.
			for _, tr := range all {
				got := getIDs(t, ch, tr.queue)
				possible := slices.Contains(tr.c.possible, kind)
				what := fmt.Sprintf("bindExactly(%s exchange, wants %s of %s)", kind, list(tr.c.want), ids(msgs))
				switch {
				case tr.err != nil && !errors.Is(tr.err, errNotPossible):
					report(kind, "%s returned %v; want nil, or an error wrapping errNotPossible", what, tr.err)
				case tr.err != nil && possible:
					report(kind, "%s says %q, but it can be done: %s", what, tr.err, how(kind))
				case tr.err != nil && len(got) > 0:
					report(kind, "%s says %q, yet the queue got %s: work out every binding first, and bind nothing when it cannot be done", what, tr.err, list(got))
				case tr.err != nil && tr.err.Error() == errNotPossible.Error():
					report(kind, "%s returns errNotPossible without saying why; wrap it: fmt.Errorf(\"%%w ...: <why>\", errNotPossible)", what)
				case tr.err == nil && !possible:
					report(kind, "%s returned nil, and the queue got %s; no bindings on a %s exchange can do it (%s): return an error wrapping errNotPossible", what, list(got), kind, whyNot(kind, msgs, tr.c.want))
				case tr.err == nil:
					if missing, extra := brokertest.DiffIDs(tr.c.want, got); len(missing) > 0 || len(extra) > 0 {
						report(kind, "%s: the queue got %s; missing %v, extra or repeated %v", what, list(got), missing, extra)
					}
				}
			}
		}
	}
	for _, kind := range kinds {
		if wrong[kind] > 0 {
			t.Errorf("%s exchange: %d of %d cases went wrong (at most 3 are listed). %s", kind, wrong[kind], len(exerciseCases), rule(kind))
		}
	}

	// Mistakes in the call are errors of their own, not "not possible".
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatalf("declaring a queue: %v", err)
	}
	exchange := prefix + ".direct.0"
	if err := bindExactly(ch, exchange, direct, q.Name, messages, []string{"m9"}); err == nil || errors.Is(err, errNotPossible) {
		t.Errorf("bindExactly with an ID no message has (m9) = %v; want an error of its own, not errNotPossible", err)
	}
	if err := bindExactly(ch, exchange, "x-consistent-hash", q.Name, messages, []string{"m1"}); err == nil || errors.Is(err, errNotPossible) {
		t.Errorf("bindExactly with exchange type x-consistent-hash = %v; want an error of its own (an unknown type), not errNotPossible", err)
	}
}

// whyNot says why no bindings on an exchange of type kind give a queue
// exactly want out of msgs, or returns "" when some can.
func whyNot(kind string, msgs []message, want []string) string {
	for _, m := range msgs {
		if !slices.Contains(want, m.id) {
			continue
		}
		for _, other := range msgs {
			if slices.Contains(want, other.id) {
				continue
			}
			switch kind {
			case fanout:
				return fmt.Sprintf("a fanout exchange gives a queue every message or none, and %s is wanted but %s is not", m.id, other.id)
			case direct, topic:
				if other.key == m.key {
					return fmt.Sprintf("%s and %s share the routing key %s, and only %s is wanted", m.id, other.id, m.key, m.id)
				}
			case headers:
				carries := true
				for name, value := range m.headers {
					carries = carries && other.headers[name] == value
				}
				if carries {
					return fmt.Sprintf("%s carries every header of %s with the same value, so every binding that matches %s matches %s too, and only %s is wanted", other.id, m.id, m.id, other.id, m.id)
				}
			}
		}
	}
	return ""
}

// how says how bindings on an exchange of type kind can do it, when they can.
func how(kind string) string {
	switch kind {
	case fanout:
		return "every message is wanted, or none: bind once, or not at all"
	case headers:
		return "no message that is not wanted carries every header of one that is: bind each wanted message with x-match all-with-x and all its headers"
	}
	return "each routing key belongs to wanted messages only, or to unwanted ones only: bind each wanted key"
}

// rule is how an exchange of type kind routes, for a wrong result.
func rule(kind string) string {
	switch kind {
	case direct:
		return "A direct exchange gives a queue every message whose routing key equals one of its binding keys."
	case topic:
		return "A topic exchange gives a queue every message whose routing key matches one of its patterns; a pattern without * or # matches that very key only."
	case fanout:
		return "A fanout exchange gives every bound queue every message, whatever the key and the arguments."
	}
	return "A headers binding with x-match all matches every message that has all its headers with equal values, but all and any skip the headers that start with x- (x-event-name too); with x-event-name alone, all compares nothing and matches everything. Use all-with-x, with every header of the wanted message."
}

// sameMessages reports whether a and b are the same message set.
func sameMessages(a, b []message) bool {
	return ids(a) == ids(b)
}

// ids lists the IDs of msgs.
func ids(msgs []message) string {
	var s []string
	for _, m := range msgs {
		s = append(s, m.id)
	}
	return strings.Join(s, " ")
}

// getIDs takes every message of a queue and returns their IDs.
func getIDs(t *testing.T, ch *amqp.Channel, queue string) []string {
	t.Helper()
	var got []string
	for {
		d, ok, err := ch.Get(queue, true /* auto-ack */)
		if err != nil {
			t.Fatalf("reading queue %s: %v", queue, err)
		}
		if !ok {
			return got
		}
		got = append(got, d.MessageId)
	}
}
