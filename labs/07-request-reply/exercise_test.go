package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labkit"
)

// TestExerciseCall checks the lab's exercise, client.call, against the
// real broker. The test plays EventService itself: it reads the questions
// call publishes from the request queue and answers them as it likes, out
// of order, late, or not at all. It checks what reached the queue
// (reply_to, correlation ids, expiration, body), what call makes of the
// replies, and, with nobody consuming, that the broker drops the expired
// question. Then the same call must work with direct reply-to.
func TestExerciseCall(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	queue := brokertest.Name(t, "lab07-requests")
	idle := brokertest.Name(t, "lab07-idle")
	deleteAfter(t, rabbit.URL, queue, idle)
	ch := testChannel(t, rabbit.URL)
	for _, q := range []string{queue, idle} {
		if _, err := ch.QueueDeclare(q,
			false, // durable
			false, // auto-delete
			false, // exclusive: call publishes from another connection
			false, // no-wait
			amqp.Table{"x-expires": queueTTL.Milliseconds()},
		); err != nil {
			t.Fatalf("declaring queue %s: %v", q, err)
		}
	}
	requests, err := ch.Consume(queue, "", true /* auto-ack */, false, false, false, nil)
	if err != nil {
		t.Fatalf("consuming queue %s: %v", queue, err)
	}
	bconn := dial(t, rabbit.URL)
	ids := sequence("q")
	c, err := newClient(bconn, queue, ids)
	if err != nil {
		t.Fatal(err)
	}

	// 1. Three questions in flight; the test answers with a stray reply
	// first, then in the order 3, 1, 2, and the reply to 3 comes twice (as
	// from an EventService that crashed after replying, before its ack).
	done := callAsync(t, c, 10*time.Second, "ev-1", "ev-2", "ev-3")
	got := receive(t, requests, 3, done)
	var sent []string
	for i, d := range got {
		want := fmt.Sprintf("ev-%d", i+1)
		if q := decodeQuestion(t, d); q.EventID != want {
			t.Errorf("question %d is about %q (body %s), want %s: publish one question per event ID, in order, with the JSON of question{EventID: ...}", i+1, q.EventID, d.Body, want)
		}
		if d.ReplyTo != c.replyTo {
			t.Errorf("question %d has reply_to %q, want the client's reply queue %q (c.replyTo): EventService sends the reply where reply_to says", i+1, d.ReplyTo, c.replyTo)
		}
		if d.CorrelationId == "" || slices.Contains(sent, d.CorrelationId) {
			t.Errorf("question %d has correlation id %q after %v: each question needs a fresh one, from c.nextID()", i+1, d.CorrelationId, sent)
		}
		sent = append(sent, d.CorrelationId)
		checkExpiration(t, d, 10*time.Second)
	}
	if t.Failed() {
		t.FailNow()
	}
	answerWith(t, ch, c.replyTo, "stray-1", reply{EventID: "ev-9", Seats: 9})
	for _, i := range []int{2, 2, 0, 1} {
		answerWith(t, ch, c.replyTo, sent[i], reply{EventID: fmt.Sprintf("ev-%d", i+1), Seats: 100 * (i + 1)})
	}
	r := wait(t, done, 10*time.Second)
	if r.err != nil {
		t.Fatalf("call with three questions, all answered: %v", r.err)
	}
	if n := countAnswers(r.answers, sent[2]); n > 1 {
		t.Errorf("call returned %+v, with %d answers to %s: the reply to it came twice, and the second copy is nobody's answer; once a question has its answer, stop waiting for it (delete its id from those waiting), so that a copy goes to c.ignored", r.answers, n, sent[2])
	}
	wantAnswers := []answer{
		{id: sent[2], reply: reply{EventID: "ev-3", Seats: 300}},
		{id: sent[0], reply: reply{EventID: "ev-1", Seats: 100}},
		{id: sent[1], reply: reply{EventID: "ev-2", Seats: 200}},
	}
	if !slices.Equal(r.answers, wantAnswers) {
		t.Errorf("call returned %+v; want %+v: the answers in the order the replies arrived, each under its question's correlation id", r.answers, wantAnswers)
	}
	if !slices.Equal(c.ignored, []string{"stray-1", sent[2]}) {
		t.Errorf("c.ignored is %v after a reply with the unknown correlation id stray-1 and a second copy of the reply to %s; want [stray-1 %s]: note the id of a reply nobody waits for, and read on", c.ignored, sent[2], sent[2])
	}
	if t.Failed() {
		t.FailNow()
	}

	// 2. A question nobody answers in time, and its reply arriving late,
	// during the next call.
	start := time.Now()
	done = callAsync(t, c, 200*time.Millisecond, "ev-4")
	late := receive(t, requests, 1, done)[0]
	checkExpiration(t, late, 200*time.Millisecond)
	r = wait(t, done, 200*time.Millisecond)
	switch {
	case r.err == nil:
		t.Fatalf("call returned %+v and no error, though nobody answered: wait until ctx ends, then return an error that wraps ctx.Err()", r.answers)
	case !errors.Is(r.err, context.DeadlineExceeded):
		t.Errorf("call without an answer returned %v after %v; want an error that wraps context.DeadlineExceeded (ctx.Err())", r.err, time.Since(start).Round(time.Millisecond))
	case !strings.Contains(r.err.Error(), late.CorrelationId):
		t.Errorf("call without an answer returned %q; want the unanswered correlation id %s in the error", r.err, late.CorrelationId)
	}
	if len(r.answers) != 0 {
		t.Errorf("call without an answer returned the answers %+v; want none", r.answers)
	}
	answerWith(t, ch, c.replyTo, late.CorrelationId, reply{EventID: "ev-4", Seats: 400})
	done = callAsync(t, c, 10*time.Second, "ev-2")
	next := receive(t, requests, 1, done)[0]
	answerWith(t, ch, c.replyTo, next.CorrelationId, reply{EventID: "ev-2", Seats: 200})
	r = wait(t, done, 10*time.Second)
	if r.err != nil {
		t.Fatalf("call after a late reply: %v", r.err)
	}
	if want := []answer{{id: next.CorrelationId, reply: reply{EventID: "ev-2", Seats: 200}}}; !slices.Equal(r.answers, want) {
		t.Errorf("call after a late reply returned %+v; want %+v: the late reply to %s is not this call's answer", r.answers, want, late.CorrelationId)
	}
	if want := []string{"stray-1", sent[2], late.CorrelationId}; !slices.Equal(c.ignored, want) {
		t.Errorf("c.ignored is %v; want %v: the late reply came for a question nobody waits for", c.ignored, want)
	}

	// 3. Nobody consumes: the question must expire in the queue.
	c2, err := newClient(bconn, idle, ids)
	if err != nil {
		t.Fatal(err)
	}
	r = wait(t, callAsync(t, c2, 300*time.Millisecond, "ev-1"), 300*time.Millisecond)
	if !errors.Is(r.err, context.DeadlineExceeded) {
		t.Errorf("call with nobody consuming returned %v; want an error that wraps context.DeadlineExceeded", r.err)
	}
	brokertest.Eventually(t, 5*time.Second, func() error {
		q, err := ch.QueueDeclarePassive(idle, false, false, false, false, nil)
		if err != nil {
			return err
		}
		if q.Messages != 0 {
			return fmt.Errorf("queue %s still holds %d questions after their caller gave up: set Expiration to the milliseconds left until ctx's deadline, so that the broker drops them", idle, q.Messages)
		}
		return nil
	})

	// 4. The same call with direct reply-to: it must publish on the
	// channel that consumes amq.rabbitmq.reply-to.
	direct, err := newDirectClient(bconn, queue, ids)
	if err != nil {
		t.Fatal(err)
	}
	closed := direct.ch.NotifyClose(make(chan *amqp.Error, 1))
	done = callAsync(t, direct, 5*time.Second, "ev-3")
	var d amqp.Delivery
	select {
	case d = <-requests:
	case e := <-closed:
		t.Fatalf("direct reply-to: the broker closed the client's channel (%v): publish the questions on c.ch, the channel that consumes %s", e, directReplyTo)
	case r := <-done:
		t.Fatalf("direct reply-to: call returned %+v, %v before any question reached queue %s: publish on c.ch, the channel that consumes %s", r.answers, r.err, queue, directReplyTo)
	}
	if !strings.HasPrefix(d.ReplyTo, directReplyTo+".") {
		t.Errorf("direct reply-to: the question reached EventService with reply_to %q; want %s.<token>, which the broker makes of c.replyTo", d.ReplyTo, directReplyTo)
	}
	answerWith(t, ch, d.ReplyTo, d.CorrelationId, reply{EventID: "ev-3", Seats: 300})
	r = wait(t, done, 5*time.Second)
	if want := []answer{{id: d.CorrelationId, reply: reply{EventID: "ev-3", Seats: 300}}}; r.err != nil || !slices.Equal(r.answers, want) {
		t.Errorf("direct reply-to: call returned %+v, %v; want %+v", r.answers, r.err, want)
	}
}

// countAnswers counts the answers to the question with correlation id id.
func countAnswers(answers []answer, id string) int {
	n := 0
	for _, a := range answers {
		if a.id == id {
			n++
		}
	}
	return n
}

// result is what one call returned.
type result struct {
	answers []answer
	err     error
}

// callAsync runs c.call under a timeout in a goroutine of its own and
// hands back its result.
func callAsync(t *testing.T, c *client, timeout time.Duration, eventIDs ...string) <-chan result {
	t.Helper()
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		answers, err := c.call(ctx, eventIDs...)
		done <- result{answers, err}
	}()
	return done
}

// wait waits for a call made with this timeout to return, allowing it
// five seconds more; a call that does not return by then never gives up.
func wait(t *testing.T, done <-chan result, timeout time.Duration) result {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(timeout + 5*time.Second):
		t.Fatalf("call has not returned 5 s after its deadline of %v: return when ctx ends (case <-ctx.Done()), with an error that wraps ctx.Err()", timeout)
		return result{}
	}
}

// receive takes n questions from the request queue's deliveries. If call
// returns first, or nothing comes, the test stops and says so.
func receive(t *testing.T, requests <-chan amqp.Delivery, n int, done <-chan result) []amqp.Delivery {
	t.Helper()
	var got []amqp.Delivery
	timeout := time.After(5 * time.Second)
	for len(got) < n {
		select {
		case d := <-requests:
			got = append(got, d)
		case r := <-done:
			if errors.Is(r.err, labkit.ErrTODO) {
				t.Fatal(r.err)
			}
			t.Fatalf("call returned %+v, %v after publishing %d of %d questions: publish all of them first, then wait for the replies", r.answers, r.err, len(got), n)
		case <-timeout:
			t.Fatalf("only %d of %d questions reached the request queue within 5 s: publish each to the default exchange (\"\") with the queue's name, c.queue, as routing key", len(got), n)
		}
	}
	return got
}

// decodeQuestion decodes a request's body.
func decodeQuestion(t *testing.T, d amqp.Delivery) question {
	t.Helper()
	var q question
	if err := json.Unmarshal(d.Body, &q); err != nil {
		t.Errorf("the question %s does not decode (%v): %s", d.CorrelationId, err, d.Body)
	}
	return q
}

// checkExpiration checks that a question expires no later than its
// caller's deadline, timeout after the call started.
func checkExpiration(t *testing.T, d amqp.Delivery, timeout time.Duration) {
	t.Helper()
	exp, err := strconv.ParseInt(d.Expiration, 10, 64)
	if err != nil || exp < 1 || exp > timeout.Milliseconds() {
		t.Errorf("question %s has expiration %q; want the whole milliseconds left until ctx's deadline, between 1 and %d, so that it expires with its caller's patience", d.CorrelationId, d.Expiration, timeout.Milliseconds())
	}
}

// answerWith publishes a reply as EventService does: to the default
// exchange, reply_to as routing key, the correlation id copied.
func answerWith(t *testing.T, ch *amqp.Channel, replyTo, id string, r reply) {
	t.Helper()
	body, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.PublishWithContext(context.Background(), "", replyTo,
		false, // mandatory
		false, // immediate
		amqp.Publishing{ContentType: "application/json", CorrelationId: id, Body: body},
	); err != nil {
		t.Fatalf("replying to %s: %v", id, err)
	}
}

// dial opens a connection of the test's own, closed when the test ends.
func dial(t testing.TB, rawURL string) *amqp.Connection {
	t.Helper()
	conn, err := amqp.Dial(rawURL)
	if err != nil {
		t.Fatalf("dialing %s: %v", brokertest.Redact(rawURL), err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}
