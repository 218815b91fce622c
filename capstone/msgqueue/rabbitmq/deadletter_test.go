package rabbitmq_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/msgqueuetest"
	"example.com/myevents/capstone/msgqueue/rabbitmq"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// raw is a message a test publishes with its own client, as another
// program (or an attacker) could.
type raw struct {
	id, key, name string // message ID, routing key, x-event-name ("" for none)
	body          []byte
}

// publish sends m to the env's exchange with amqp091-go directly.
func (e *env) publish(t *testing.T, m raw) {
	t.Helper()
	headers := amqp.Table{}
	if m.name != "" {
		headers[rabbitmq.HeaderEventName] = m.name
	}
	err := publishRaw(e.rabbit.URL, e.exchange, m.key, amqp.Publishing{
		Headers: headers, ContentType: "application/json", DeliveryMode: amqp.Persistent,
		MessageId: m.id, Body: m.body,
	})
	if err != nil {
		t.Fatalf("publishing %s: %v", m.id, err)
	}
}

// deadLetters waits until the dead-letter queue holds want messages and
// returns them by message ID.
func (e *env) deadLetters(t *testing.T, want int) map[string]amqp.Delivery {
	t.Helper()
	var out map[string]amqp.Delivery
	brokertest.Eventually(t, 30*time.Second, func() error {
		ds, err := peekQueue(e.rabbit.URL, rabbitmq.DeadLetterQueue(e.queue))
		if err != nil {
			return err
		}
		out = map[string]amqp.Delivery{}
		for _, d := range ds {
			out[d.MessageId] = d
		}
		if len(ds) != want {
			return fmt.Errorf("%d dead letters, want %d", len(ds), want)
		}
		return nil
	})
	return out
}

// TestHostileMessagesAreDeadLetteredWithTheirReason publishes, with a raw
// client, what no handler may ever see: a 5 MB event.created, a routing
// key that says one event and a header that says another, seat counts
// that wrap an int64, invalid UTF-8, no event name. Each is dead-lettered
// at once, its copy says why in x-dlq-* headers and fits the limits, and
// the good event behind them is handled.
func TestHostileMessagesAreDeadLetteredWithTheirReason(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.mustListener(t, contracts.Names())
	huge := []byte(`{"id":"ev-huge","location_id":"l","hall":"h","capacity":10,"name":"` + strings.Repeat("x", 5<<20) + `"}`)
	location := []byte(`{"id":"loc-1","name":"Arena","halls":[{"name":"Main","capacity":10}]}`)
	hostile := []struct {
		raw
		reason, errPart string
	}{
		{raw{"huge", contracts.EventCreatedName, contracts.EventCreatedName, huge}, msgqueue.ReasonTooLarge, "bytes"},
		{raw{"mismatch", contracts.EventCreatedName, contracts.LocationCreatedName, location}, msgqueue.ReasonRoutingKey, `routing key "event.created"`},
		{raw{"wrap", contracts.EventBookedName, contracts.EventBookedName, []byte(`{"id":"b","event_id":"e","user_id":"u","seats":9223372036854775807}`)}, msgqueue.ReasonInvalidPayload, "at most 1000"},
		{raw{"utf8", contracts.EventBookedName, contracts.EventBookedName, []byte("{\"id\":\"b\",\"event_id\":\"e\",\"user_id\":\"\xff\",\"seats\":1}")}, msgqueue.ReasonInvalidPayload, "not valid UTF-8"},
		{raw{"nameless", contracts.EventBookedName, "", []byte(`{"id":"b","event_id":"e","seats":1}`)}, msgqueue.ReasonMissingName, "x-event-name"},
		{raw{"unknown", "event.cancelled", "event.cancelled", []byte(`{"id":"e"}`)}, msgqueue.ReasonUnknownEvent, "unknown event name"},
	}
	// event.cancelled is not bound: route the unknown one through the
	// default exchange, straight to the queue, with a matching key.
	for _, h := range hostile {
		if h.id == "unknown" {
			err := publishRaw(e.rabbit.URL, "", e.queue, amqp.Publishing{
				Headers: amqp.Table{rabbitmq.HeaderEventName: h.name}, MessageId: h.id, Body: h.body})
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		e.publish(t, h.raw)
	}
	good, _ := json.Marshal(booking("good"))
	e.publish(t, raw{"good", contracts.EventBookedName, contracts.EventBookedName, good})

	var mu sync.Mutex
	var seen []string
	listenInBackground(t, l, func(_ context.Context, ev contracts.Event) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, fmt.Sprintf("%s %T", ev.EventName(), ev))
		return nil
	})
	dead := e.deadLetters(t, len(hostile))
	brokertest.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) != 1 || seen[0] != "event.booked *contracts.EventBooked" {
			return fmt.Errorf("the handler saw %v, want only the good booking", seen)
		}
		return nil
	})
	for _, h := range hostile {
		d, ok := dead[h.id]
		if !ok {
			t.Errorf("%s: not in the dead-letter queue", h.id)
			continue
		}
		reason, _ := d.Headers[msgqueue.HeaderReason].(string)
		cause, _ := d.Headers[msgqueue.HeaderError].(string)
		if reason != h.reason || !strings.Contains(cause, h.errPart) {
			t.Errorf("%s: dead-lettered with %s=%q %s=%q, want %q and an error containing %q",
				h.id, msgqueue.HeaderReason, reason, msgqueue.HeaderError, cause, h.reason, h.errPart)
		}
		if len(d.Body) > msgqueue.MaxMessageSize || len(cause) > msgqueue.MaxErrorHeader {
			t.Errorf("%s: the copy holds %d bytes and a %d-byte error", h.id, len(d.Body), len(cause))
		}
		if h.id != "huge" && !bytes.Equal(d.Body, h.body) {
			t.Errorf("%s: the copy's body %q is not the original %q", h.id, d.Body, h.body)
		}
		if q, _ := d.Headers["x-dlq-queue"].(string); q != e.queue {
			t.Errorf("%s: x-dlq-queue = %q, want %q", h.id, q, e.queue)
		}
	}
	if d := dead["huge"]; d.Headers[msgqueue.HeaderTruncated] != "true" || fmt.Sprint(d.Headers[msgqueue.HeaderOriginalSize]) != fmt.Sprint(len(huge)) {
		t.Errorf("the 5 MB copy has %s=%v %s=%v, want true and %d", msgqueue.HeaderTruncated, d.Headers[msgqueue.HeaderTruncated],
			msgqueue.HeaderOriginalSize, d.Headers[msgqueue.HeaderOriginalSize], len(huge))
	}
	if st := l.Stats(); st.DeadLettered != int64(len(hostile)) || st.Retried != 0 {
		t.Errorf("listener %+v, want %d dead letters and no retries", st, len(hostile))
	}
}

// TestDeliveryLimitDeadLetters: a message whose handler always fails is
// delivered WithDeliveryLimit times, then dead-lettered with the reason
// retries-exhausted, and the next message is handled.
func TestDeliveryLimitDeadLetters(t *testing.T) {
	t.Parallel()
	const limit = 3
	e := newEnv(t, rabbitmq.WithDeliveryLimit(limit))
	l := e.mustListener(t, []string{contracts.EventBookedName})
	em := e.mustEmitter(t)
	for _, id := range []string{"always-fails", "fine"} {
		if err := em.Emit(t.Context(), booking(id)); err != nil {
			t.Fatal(err)
		}
	}

	var (
		c     callCounter
		times []time.Time // of the failing message's deliveries, under c.mu
	)
	listenInBackground(t, l, c.handler(func(id string) error {
		if id != "always-fails" {
			return nil
		}
		times = append(times, time.Now())
		return errors.New("the database is down")
	}))

	dead := e.deadLetters(t, 1)
	c.mu.Lock()
	n := c.calls["always-fails"]
	gaps := make([]string, 0, len(times))
	for i := 1; i < len(times); i++ {
		gaps = append(gaps, times[i].Sub(times[i-1]).Round(time.Millisecond).String())
	}
	fine := c.calls["fine"]
	c.mu.Unlock()
	t.Logf("delivery limit %d: the failing message was delivered %d times (gaps %v), then dead-lettered", limit, n, gaps)
	if n != limit || fine != 1 {
		t.Errorf("the failing message was delivered %d times, want %d; the good one %d times, want 1", n, limit, fine)
	}
	for _, d := range dead {
		if reason := d.Headers[msgqueue.HeaderReason]; reason != msgqueue.ReasonRetriesExhausted {
			t.Errorf("%s = %v, want %s", msgqueue.HeaderReason, reason, msgqueue.ReasonRetriesExhausted)
		}
		if cause, _ := d.Headers[msgqueue.HeaderError].(string); cause != "the database is down" {
			t.Errorf("%s = %q, want the handler's error", msgqueue.HeaderError, cause)
		}
		if attempts := fmt.Sprint(d.Headers[msgqueue.HeaderAttempts]); attempts != fmt.Sprint(limit) {
			t.Errorf("%s = %s, want %d", msgqueue.HeaderAttempts, attempts, limit)
		}
	}
	if st := l.Stats(); st.Retried != int64(limit-1) || st.DeadLettered != 1 {
		t.Errorf("listener %+v, want %d retries and 1 dead letter", st, limit-1)
	}
}

// TestRetryBackoffDoesNotStallOtherMessages: while one message waits out a
// long retry backoff, the listener goes on with the others; Close does not
// wait for the backoff either.
func TestRetryBackoffDoesNotStallOtherMessages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, rabbitmq.WithRetryBackoff(time.Hour, time.Hour))
	l := e.mustListener(t, []string{contracts.EventBookedName})
	em := e.mustEmitter(t)
	if err := em.Emit(t.Context(), booking("fails-once")); err != nil {
		t.Fatal(err)
	}
	const others = 20
	for i := range others {
		if err := em.Emit(t.Context(), booking(fmt.Sprintf("other-%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	var c callCounter
	listenInBackground(t, l, c.handler(func(id string) error {
		if id == "fails-once" {
			return errors.New("a dependency hiccuped")
		}
		return nil
	}))
	brokertest.Eventually(t, 20*time.Second, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if n := len(c.calls) - 1; n < others {
			return fmt.Errorf("%d of %d other messages handled while one waits out an hour of backoff", n, others)
		}
		return nil
	})
	start := time.Now()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Close took %v: it waited for the backoff", took)
	}
	// The waiting message went back to the queue with the channel.
	left, err := peekQueue(e.rabbit.URL, e.queue)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || !strings.Contains(string(left[0].Body), "fails-once") {
		t.Errorf("the queue holds %d messages after Close, want the one waiting", len(left))
	}
}

// TestMessageIDIsStable: the same event gets the same message ID whenever
// it is emitted (a resend, an outbox row sent again after a restart, which
// decodes it from its JSON first); different events get different IDs.
func TestMessageIDIsStable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustListener(t, []string{contracts.EventBookedName})
	em := e.mustEmitter(t)
	first := booking("b-1")
	body, _ := json.Marshal(first)
	again, err := contracts.Decode(contracts.EventBookedName, body)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []contracts.Event{first, first, again, booking("b-2")} {
		if err := em.Emit(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := peekQueue(e.rabbit.URL, e.queue)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 4 {
		t.Fatalf("%d messages, want 4", len(ds))
	}
	ids := []string{ds[0].MessageId, ds[1].MessageId, ds[2].MessageId, ds[3].MessageId}
	if ids[0] == "" || ids[1] != ids[0] || ids[2] != ids[0] || ids[3] == ids[0] {
		t.Errorf("message IDs %v: want the first three equal, the fourth different", ids)
	}
	if want := msgqueue.MessageID(contracts.EventBookedName, body); ids[0] != want {
		t.Errorf("message ID %s, want msgqueue.MessageID = %s", ids[0], want)
	}
}

// TestSameEventUnroutableAtOnce: the same event emitted from many
// goroutines at once shares one message ID; each Emit still gets its own
// answer when no queue is bound for it.
func TestSameEventUnroutableAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	em := e.mustEmitter(t) // no listener: nothing is bound
	const goroutines = 20
	errs := make(chan error, goroutines)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() { errs <- em.Emit(t.Context(), booking("nobody-listens")) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, msgqueue.ErrUnroutable) {
			t.Errorf("Emit = %v, want ErrUnroutable", err)
		}
	}
}

// TestEmitRefusesOversizedEvents: an event whose body would be over
// 64 KiB is never published.
func TestEmitRefusesOversizedEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustListener(t, []string{contracts.LocationCreatedName})
	em := e.mustEmitter(t)
	if err := em.Emit(t.Context(), msgqueuetest.BulkyLocation()); !errors.Is(err, msgqueue.ErrTooLarge) {
		t.Errorf("Emit = %v, want ErrTooLarge", err)
	}
	if ds, err := peekQueue(e.rabbit.URL, e.queue); err != nil || len(ds) != 0 {
		t.Errorf("the queue holds %d messages (%v), want none", len(ds), err)
	}
}

// TestDeadLetterCopyOfFatHeadersFits: a message to be dead-lettered whose
// headers nearly fill a frame (frame_max: properties and headers travel
// in one) gets a copy without them, x-dlq-headers-dropped saying how
// many; one whose unknown event name fills half a frame gets a copy that
// repeats at most 255 bytes of it; and the valid bookings behind them are
// handled once each. Both are over msgqueue.MaxMessageSize with their
// headers (TestHeadersCountTowardTheLimit), so both are dead-lettered as
// too large. The copy
// used to keep them and overflow the frame; the broker closed the
// listener's whole connection over it, so the prefetched bookings came
// back with the poison again and again, until the queue's delivery limit
// dead-lettered them too.
func TestDeadLetterCopyOfFatHeadersFits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.mustListener(t, contracts.Names())
	conn, err := amqp.Dial(e.rabbit.URL)
	if err != nil {
		t.Fatal(err)
	}
	frame := conn.Config.FrameSize
	conn.Close()
	// No x-event-name, and headers over 64 KiB: dead-lettered at once.
	// The message itself fits a frame.
	err = publishRaw(e.rabbit.URL, e.exchange, contracts.EventBookedName, amqp.Publishing{
		Headers: amqp.Table{"pad": strings.Repeat("p", frame-150)}, MessageId: "fat", Body: []byte(`{}`)})
	if err != nil {
		t.Fatalf("publishing a message with %d bytes of headers (frame_max %d): %v", frame-150, frame, err)
	}
	// An unknown event name of more than half a frame: a copy that kept
	// it and said it again in x-dlq-event-name overflowed the frame too.
	long := strings.Repeat("z", frame/2+1000)
	err = publishRaw(e.rabbit.URL, "", e.queue, amqp.Publishing{
		Headers: amqp.Table{rabbitmq.HeaderEventName: long}, MessageId: "long-name", Body: []byte(`{}`)})
	if err != nil {
		t.Fatalf("publishing a message with a %d-byte event name: %v", len(long), err)
	}
	const good = 5
	for i := range good {
		body, _ := json.Marshal(booking(fmt.Sprintf("good-%d", i)))
		e.publish(t, raw{fmt.Sprintf("good-%d", i), contracts.EventBookedName, contracts.EventBookedName, body})
	}

	var c callCounter
	listenInBackground(t, l, c.handler(func(string) error { return nil }))
	dead := e.deadLetters(t, 2)
	if d := dead["long-name"]; d.Headers[msgqueue.HeaderReason] != msgqueue.ReasonTooLarge || len(fmt.Sprint(d.Headers[msgqueue.HeaderEventName])) > 255 {
		t.Errorf("the long name's copy says %s=%v with a %d-byte %s, want %s and at most 255 bytes", msgqueue.HeaderReason, d.Headers[msgqueue.HeaderReason],
			len(fmt.Sprint(d.Headers[msgqueue.HeaderEventName])), msgqueue.HeaderEventName, msgqueue.ReasonTooLarge)
	}
	d, ok := dead["fat"]
	switch {
	case !ok:
		t.Fatalf("the dead-letter queue holds %v, not the fat message", dead)
	case d.Headers[msgqueue.HeaderReason] != msgqueue.ReasonTooLarge:
		t.Errorf("the copy says %s=%v, want %s", msgqueue.HeaderReason, d.Headers[msgqueue.HeaderReason], msgqueue.ReasonTooLarge)
	case d.Headers[rabbitmq.HeaderHeadersDropped] != int64(1) || d.Headers["pad"] != nil:
		t.Errorf("the copy has %s=%v and a pad of %d bytes, want 1 header dropped", rabbitmq.HeaderHeadersDropped,
			d.Headers[rabbitmq.HeaderHeadersDropped], len(fmt.Sprint(d.Headers["pad"])))
	}
	brokertest.Eventually(t, 10*time.Second, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.calls) != good {
			return fmt.Errorf("handled %v, want %d bookings", c.calls, good)
		}
		return nil
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, n := range c.calls {
		if n != 1 {
			t.Errorf("%s handled %d times, want once", id, n)
		}
	}
	if st := l.Stats(); st.DeadLettered != 2 || st.Retried != 0 || st.Reconnects != 0 {
		t.Errorf("listener %+v, want 2 dead letters, no retries and no reconnects", st)
	}
}

// TestEventNameOfAnotherTypeIsNamedInTheReason: an x-event-name header
// that is there but neither a string nor bytes (a number, here) is
// dead-lettered saying so; it was reported as no header at all.
func TestEventNameOfAnotherTypeIsNamedInTheReason(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.mustListener(t, contracts.Names())
	body, _ := json.Marshal(booking("bytes"))
	err := publishRaw(e.rabbit.URL, e.exchange, contracts.EventBookedName, amqp.Publishing{
		Headers: amqp.Table{rabbitmq.HeaderEventName: int64(7)}, MessageId: "bytes", Body: body})
	if err != nil {
		t.Fatal(err)
	}
	listenInBackground(t, l, func(context.Context, contracts.Event) error { return nil })
	d := e.deadLetters(t, 1)["bytes"]
	cause, _ := d.Headers[msgqueue.HeaderError].(string)
	if d.Headers[msgqueue.HeaderReason] != msgqueue.ReasonMissingName || !strings.Contains(cause, "int64, not a string") {
		t.Errorf("dead-lettered with %v: %q, want %s saying the header is not a string", d.Headers[msgqueue.HeaderReason], cause, msgqueue.ReasonMissingName)
	}
}

// TestPoisonWhileTheDeadLetterQueueIsGoneIsNotLost: someone deletes the
// dead-letter queue under a running listener (its periodic topology
// check, 30 s by default, would bring it back later). A poison message
// heard meanwhile was copied to the dead-letter exchange, which routed
// the copy nowhere, and the original was acknowledged: lost. Now the
// copy is published mandatory; when it comes back unroutable, the
// listener declares its topology again and sends the copy once more.
func TestPoisonWhileTheDeadLetterQueueIsGoneIsNotLost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, rabbitmq.WithTopologyCheck(time.Hour))
	l := e.mustListener(t, contracts.Names())
	var good atomic.Bool
	listenInBackground(t, l, func(_ context.Context, ev contracts.Event) error {
		if b, ok := ev.(*contracts.EventBooked); ok && b.ID == "good" {
			good.Store(true)
		}
		return nil
	})
	brokertest.Eventually(t, 10*time.Second, func() error {
		if !l.Connected() {
			return errors.New("the listener is not consuming yet")
		}
		return nil
	})
	ch := brokertest.AdminChannel(t, e.rabbit.URL)
	if _, err := ch.QueueDelete(rabbitmq.DeadLetterQueue(e.queue), false, false, false); err != nil {
		t.Fatalf("deleting the dead-letter queue: %v", err)
	}
	e.publish(t, raw{id: "poison", key: contracts.EventBookedName, name: contracts.EventBookedName, body: []byte("{not json")})
	body, _ := json.Marshal(booking("good"))
	e.publish(t, raw{id: "good", key: contracts.EventBookedName, name: contracts.EventBookedName, body: body})
	brokertest.Eventually(t, 30*time.Second, func() error {
		if !good.Load() {
			return errors.New("the good event behind the poison is not handled yet")
		}
		return nil
	})
	d, ok := e.deadLetters(t, 1)["poison"]
	if !ok || d.Headers[msgqueue.HeaderReason] != msgqueue.ReasonInvalidPayload {
		t.Errorf("dead letters hold %v with reason %v, want the poison message with %s", d.MessageId, d.Headers[msgqueue.HeaderReason], msgqueue.ReasonInvalidPayload)
	}
}

// TestForgedDeadLetterHeadersAreDropped: a poison message that arrives
// with x-dlq-* headers of its own (a forged truncation and size) gets a
// dead-letter copy whose x-dlq-* headers are the listener's alone; its
// other headers are kept.
func TestForgedDeadLetterHeadersAreDropped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.mustListener(t, contracts.Names())
	err := publishRaw(e.rabbit.URL, e.exchange, contracts.EventBookedName, amqp.Publishing{
		Headers: amqp.Table{rabbitmq.HeaderEventName: contracts.EventBookedName,
			msgqueue.HeaderTruncated: "true", msgqueue.HeaderOriginalSize: int64(99999999), "x-app": "kept"},
		MessageId: "forged", Body: []byte("{bad")})
	if err != nil {
		t.Fatal(err)
	}
	listenInBackground(t, l, func(context.Context, contracts.Event) error { return nil })
	d := e.deadLetters(t, 1)["forged"]
	for _, k := range []string{msgqueue.HeaderTruncated, msgqueue.HeaderOriginalSize} {
		if v, ok := d.Headers[k]; ok {
			t.Errorf("the copy of a 4-byte message carries the forged %s %v", k, v)
		}
	}
	if d.Headers[msgqueue.HeaderReason] != msgqueue.ReasonInvalidPayload || d.Headers["x-app"] != "kept" {
		t.Errorf("the copy's headers are %v, want reason %s and x-app kept", d.Headers, msgqueue.ReasonInvalidPayload)
	}
}

// TestForgedDeliveryCountIsNotTrusted publishes, as another client could
// (one that republishes what it consumed from a quorum queue carries the
// header along), an event.booked whose x-delivery-count says it was
// delivered 50 times already. The broker delivers it for the first time;
// one failure of the handler must not dead-letter it as if the delivery
// limit were spent, nor may its redeliveries be counted from 50: it fails
// twice, and the third delivery the limit of 3 allows applies it.
func TestForgedDeliveryCountIsNotTrusted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, rabbitmq.WithDeliveryLimit(3), rabbitmq.WithRetryBackoff(10*time.Millisecond, 10*time.Millisecond))
	l := e.mustListener(t, []string{contracts.EventBookedName})
	body, err := json.Marshal(booking("forged-count"))
	if err != nil {
		t.Fatal(err)
	}
	err = publishRaw(e.rabbit.URL, e.exchange, contracts.EventBookedName, amqp.Publishing{
		Headers:   amqp.Table{rabbitmq.HeaderEventName: contracts.EventBookedName, "x-delivery-count": int64(50)},
		MessageId: "forged-count", Body: body})
	if err != nil {
		t.Fatal(err)
	}
	var c callCounter
	listenInBackground(t, l, c.handler(func(id string) error {
		if c.calls[id] <= 2 {
			return errors.New("the database hiccuped")
		}
		return nil
	}))
	brokertest.Eventually(t, 20*time.Second, func() error {
		st := l.Stats()
		if st.DeadLettered != 0 {
			return nil // reported below
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if n := c.calls["forged-count"]; n < 3 {
			return fmt.Errorf("the message was handled %d times, want 3 (two failures, then applied)", n)
		}
		return nil
	})
	if st := l.Stats(); st.DeadLettered != 0 {
		t.Errorf("a first delivery with a forged x-delivery-count of 50 was dead-lettered before its third delivery (%+v); the count of a delivery that is not a redelivery is 0", st)
	}
}

// TestEventNameAsBytesIsRead publishes an event.booked whose x-event-name
// is a byte array (AMQP field type 'x'), as pika sends a header given as
// Python bytes: the name is the same, and the event is handled, not
// dead-lettered as having no name.
func TestEventNameAsBytesIsRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.mustListener(t, []string{contracts.EventBookedName})
	body, err := json.Marshal(booking("name-as-bytes"))
	if err != nil {
		t.Fatal(err)
	}
	err = publishRaw(e.rabbit.URL, e.exchange, contracts.EventBookedName, amqp.Publishing{
		Headers:   amqp.Table{rabbitmq.HeaderEventName: []byte(contracts.EventBookedName)},
		MessageId: "name-as-bytes", Body: body})
	if err != nil {
		t.Fatal(err)
	}
	var c callCounter
	listenInBackground(t, l, c.handler(func(string) error { return nil }))
	brokertest.Eventually(t, 20*time.Second, func() error {
		if st := l.Stats(); st.DeadLettered != 0 {
			t.Fatalf("an event.booked whose %s is a byte array was dead-lettered (%+v)", rabbitmq.HeaderEventName, st)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.calls["name-as-bytes"] != 1 {
			return fmt.Errorf("the event was handled %d times, want 1", c.calls["name-as-bytes"])
		}
		return nil
	})
}

// TestHeadersCountTowardTheLimit: a message's headers are part of what
// msgqueue.MaxMessageSize bounds, as a Kafka record's are. A valid
// event.booked under 100 headers of 1,000 bytes each (which another
// client can send: the broker takes headers up to its frame size) is
// dead-lettered as too large, and so is one that puts 100 KB in headers
// named as the broker's own (x-death, x-delivery-count), which a first
// delivery does not carry from the broker; one with a few small headers
// of its own is handled.
func TestHeadersCountTowardTheLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := e.mustListener(t, []string{contracts.EventBookedName})
	for id, n := range map[string]int{"fat-headers": 100, "forged-broker-headers": 0, "thin-headers": 3} {
		body, err := json.Marshal(booking(id))
		if err != nil {
			t.Fatal(err)
		}
		headers := amqp.Table{rabbitmq.HeaderEventName: contracts.EventBookedName}
		for i := range n {
			headers[fmt.Sprintf("x-app-%03d", i)] = strings.Repeat("h", 1000)
		}
		if id == "forged-broker-headers" {
			headers["x-death"] = strings.Repeat("d", 50_000)
			headers["x-delivery-count"] = strings.Repeat("c", 50_000)
		}
		err = publishRaw(e.rabbit.URL, e.exchange, contracts.EventBookedName, amqp.Publishing{Headers: headers, MessageId: id, Body: body})
		if err != nil {
			t.Fatal(err)
		}
	}
	var c callCounter
	listenInBackground(t, l, c.handler(func(string) error { return nil }))
	dead := e.deadLetters(t, 2)
	for _, id := range []string{"fat-headers", "forged-broker-headers"} {
		d, ok := dead[id]
		if !ok {
			t.Errorf("%s, under 100 KB of headers, is not dead-lettered", id)
			continue
		}
		if reason, _ := d.Headers[msgqueue.HeaderReason].(string); reason != msgqueue.ReasonTooLarge {
			t.Errorf("%s, under 100 KB of headers, was dead-lettered with %s=%q, want %s", id, msgqueue.HeaderReason, reason, msgqueue.ReasonTooLarge)
		}
	}
	brokertest.Eventually(t, 10*time.Second, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.calls["thin-headers"] != 1 || len(c.calls) != 1 {
			return fmt.Errorf("the handler saw %v, want thin-headers once and nothing else", c.calls)
		}
		return nil
	})
}

// TestEmitCountsTheHeadersTowardTheLimit: the emitter bounds what its
// listener bounds, the body and the headers together
// (TestHeadersCountTowardTheLimit). An event whose body is exactly
// msgqueue.MaxMessageSize, which the emitter took when it counted the
// body alone, would be dead-lettered by every listener: Emit refuses it.
func TestEmitCountsTheHeadersTowardTheLimit(t *testing.T) {
	t.Parallel()
	loc, err := msgqueuetest.LocationBodyAtTheLimit("loc-edge")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	e.mustListener(t, []string{contracts.LocationCreatedName})
	em := e.mustEmitter(t)
	if err := em.Emit(t.Context(), loc); !errors.Is(err, msgqueue.ErrTooLarge) {
		t.Errorf("Emit of a location whose body alone is %d bytes = %v, want ErrTooLarge", msgqueue.MaxMessageSize, err)
	}
	if ds, err := peekQueue(e.rabbit.URL, e.queue); err != nil || len(ds) != 0 {
		t.Errorf("the queue holds %d messages (%v), want none", len(ds), err)
	}
}
