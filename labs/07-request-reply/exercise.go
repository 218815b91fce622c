//go:build exercise

package main

import (
	"context"

	"example.com/myevents/labs/labkit"
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
// Exercise: write it, following the steps below. Check it with
//
//	go test -tags exercise ./labs/07-request-reply
//
// and see it in the program with go run -tags exercise ./labs/07-request-reply.
// The hints are in docs/exercises.md; the answer is in solution.go.
func (c *client) call(ctx context.Context, eventIDs ...string) ([]answer, error) {
	// The question expires with the caller's deadline, if it has one.

	// Publish one question per event ID, each under a fresh correlation
	// id, and remember which ids are waiting for a reply.

	// Read replies until every question has its answer, or ctx ends.

	// A reply nobody waits for any more (its caller gave up, or this is
	// a second copy): note its id, and read on.

	// The reply to one of this call's questions: decode it.

	// Give up, and say which questions are still unanswered.

	return nil, labkit.TODO("call", "publish each question with reply_to and a fresh correlation id, then wait for the matching replies until ctx ends")
}
