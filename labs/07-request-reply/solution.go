//go:build !exercise

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// call asks EventService how many seats each of the events has: one
// question per event ID, all in flight at once, and waits for the replies.
//
// For each event ID, in order, it takes a fresh correlation id from
// c.nextID and publishes the question (JSON, see question) on c.ch to
// EventService's request queue c.queue through the default exchange, with
//
//   - ReplyTo c.replyTo: where EventService is to send the reply;
//   - CorrelationId the fresh id, which EventService copies onto its reply;
//   - Expiration the whole milliseconds left until ctx's deadline (at least
//     1), when ctx has one: the broker then drops a question nobody waits
//     for any more, instead of handing it to an EventService that comes
//     back later.
//
// Then it reads c.replies. A reply whose CorrelationId is that of one of
// its questions still waiting is that question's answer: decode its JSON
// body into the answer's reply. Any other reply is for a question nobody
// waits for any more (its caller gave up, or it has its answer already and
// this is a second copy: a request may be delivered, and answered, twice):
// append its correlation id to c.ignored and read on.
//
// It returns the answers in the order they arrived, once every question
// has one. When ctx ends first, it returns the answers so far and an error
// that wraps ctx.Err() and names the correlation ids still unanswered. A
// publish that fails, a reply that does not decode, or c.replies closing
// is an error too. (The types client, question, reply and answer are in
// main.go.)
//
// This is the lab's exercise: exercise.go holds the template, and
// go test -tags exercise ./labs/07-request-reply checks it.
func (c *client) call(ctx context.Context, eventIDs ...string) ([]answer, error) {
	// The question expires with the caller's deadline, if it has one.
	expiration := ""
	if deadline, ok := ctx.Deadline(); ok {
		left := time.Until(deadline).Milliseconds()
		expiration = strconv.FormatInt(max(left, 1), 10)
	}

	// Publish one question per event ID, each under a fresh correlation
	// id, and remember which ids are waiting for a reply.
	waiting := map[string]bool{}
	var order []string // the ids, in the order asked, for the error
	for _, eventID := range eventIDs {
		body, err := json.Marshal(question{EventID: eventID})
		if err != nil {
			return nil, fmt.Errorf("encoding the question about %s: %w", eventID, err)
		}
		id := c.nextID()
		if err := c.ch.PublishWithContext(ctx, "", c.queue,
			false, // mandatory
			false, // immediate
			amqp.Publishing{
				ContentType:   "application/json",
				ReplyTo:       c.replyTo,
				CorrelationId: id,
				Expiration:    expiration,
				Body:          body,
			}); err != nil {
			return nil, fmt.Errorf("publishing the question about %s: %w", eventID, err)
		}
		waiting[id] = true
		order = append(order, id)
	}

	// Read replies until every question has its answer, or ctx ends.
	var answers []answer
	for len(waiting) > 0 {
		select {
		case d, ok := <-c.replies:
			if !ok {
				return answers, errors.New("waiting for replies: the reply consumer stopped")
			}
			// A reply nobody waits for any more (its caller gave up, or
			// this is a second copy): note its id, and read on.
			if !waiting[d.CorrelationId] {
				c.ignored = append(c.ignored, d.CorrelationId)
				continue
			}
			// The reply to one of this call's questions: decode it.
			a := answer{id: d.CorrelationId}
			if err := json.Unmarshal(d.Body, &a.reply); err != nil {
				return answers, fmt.Errorf("decoding the reply to %s: %w", d.CorrelationId, err)
			}
			delete(waiting, d.CorrelationId)
			answers = append(answers, a)
		case <-ctx.Done():
			// Give up, and say which questions are still unanswered.
			var unanswered []string
			for _, id := range order {
				if waiting[id] {
					unanswered = append(unanswered, id)
				}
			}
			return answers, fmt.Errorf("waiting for the replies to %s: %w", strings.Join(unanswered, ", "), ctx.Err())
		}
	}
	return answers, nil
}
