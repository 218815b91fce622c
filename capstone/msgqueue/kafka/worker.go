package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/IBM/sarama"

	"example.com/myevents/capstone/internal/backoff"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
)

// Headers a Listener puts on a dead-lettered record, beside the headers the
// record already had (dropped, and counted in HeaderHeadersDropped, if
// they alone are larger than msgqueue.MaxMessageSize). Its key and value
// are the original bytes, cut to msgqueue.MaxMessageSize each (then
// msgqueue.HeaderTruncated says so), so that the copy of a record that
// barely fitted the broker still fits it.
const (
	HeaderReason         = msgqueue.HeaderReason      // one of the Reason constants
	HeaderError          = msgqueue.HeaderError       // the error text
	HeaderAttempts       = msgqueue.HeaderAttempts    // handler calls made (0: never handed over)
	HeaderEventName      = msgqueue.HeaderEventName   // the envelope's eventName, when it had one
	HeaderTopic          = "x-dlq-original-topic"     // where the record was read
	HeaderPartition      = "x-dlq-original-partition" // its partition, in decimal
	HeaderOffset         = "x-dlq-original-offset"    // its offset, in decimal
	HeaderConsumer       = "x-dlq-consumer"           // the consumer group, or "replay"
	HeaderKeyTruncated   = "x-dlq-key-truncated"      // "true" when the key was cut
	HeaderHeadersDropped = "x-dlq-headers-dropped"    // how many original headers were left out
	HeaderBodyDropped    = "x-dlq-body-dropped"       // "true" when the dead-letter topic refused even the cut copy: no key, no value
)

// Why a record was dead-lettered (the value of HeaderReason).
const (
	ReasonMalformed        = msgqueue.ReasonMalformed        // not an envelope, or no eventName
	ReasonUnknownEvent     = msgqueue.ReasonUnknownEvent     // an eventName no contract has
	ReasonInvalidPayload   = msgqueue.ReasonInvalidPayload   // the payload does not decode or validate
	ReasonTooLarge         = msgqueue.ReasonTooLarge         // the value is larger than msgqueue.MaxMessageSize
	ReasonPermanent        = msgqueue.ReasonPermanent        // the handler returned msgqueue.Permanent
	ReasonRetriesExhausted = msgqueue.ReasonRetriesExhausted // the handler failed on every attempt
)

// worker turns one record into a finished outcome: handled, skipped or
// dead-lettered.
type worker struct {
	l          *Listener
	handler    msgqueue.Handler
	batch      msgqueue.BatchHandler // nil: every event goes to handler alone
	handlerCtx context.Context       // what the handlers receive: Listen's ctx
	filter     map[string]bool
	consumer   string // the group, or "replay", for the dead-letter header

	// calling makes handler calls one at a time, although partitions are
	// read concurrently: a handler never runs twice at once.
	calling sync.Mutex
}

// call runs the handler, never concurrently with another call.
func (w *worker) call(ev contracts.Event) error {
	w.calling.Lock()
	defer w.calling.Unlock()
	return w.handler(w.handlerCtx, ev)
}

// callBatch runs the batch handler, never concurrently with another call.
func (w *worker) callBatch(evs []contracts.Event) error {
	w.calling.Lock()
	defer w.calling.Unlock()
	return w.batch(w.handlerCtx, evs)
}

// handled reports whether finish would hand d to the handler (it decoded
// and is one of the listener's events) and skipped whether it would skip
// it (an event of another name); a record that is neither is dead-lettered.
func (w *worker) handled(d decoded) (handled, skipped bool) {
	switch {
	case d.big, d.name == "", errors.Is(d.err, contracts.ErrUnknownEvent):
		return false, false
	case !w.filter[d.name]:
		return false, true
	}
	return d.err == nil, false
}

// finishRun finishes a run of decoded records in order and calls done
// with the last record of each stretch it finished; it reports false
// when ctx ended first, and then the records after the last done are not
// done. With a batch handler, a stretch of two or more records that would
// each be handled or skipped (window) goes to it in one call, the handled
// ones; if that fails, nothing was applied (msgqueue.BatchHandler) and
// each of them is finished alone, with its own retries and dead letter.
// Any other record is finished alone, in its place, so a partition's
// order holds.
func (w *worker) finishRun(ctx context.Context, run []decoded, done func(*sarama.ConsumerMessage)) bool {
	for len(run) > 0 {
		if ctx.Err() != nil {
			return false
		}
		n := 1
		if w.batch != nil {
			n = w.window(run)
		}
		if n > 1 {
			evs := make([]contracts.Event, 0, n)
			for _, d := range run[:n] {
				if handled, _ := w.handled(d); handled {
					evs = append(evs, d.ev)
				}
			}
			err := error(nil)
			if len(evs) > 0 {
				err = w.callBatch(evs)
			}
			if err == nil {
				done(run[n-1].msg)
				run = run[n:]
				continue
			}
			w.l.logger.Debug("the window failed as a whole; handling its records one by one",
				"records", n, "partition", run[0].msg.Partition, "offset", run[0].msg.Offset, "err", err)
		}
		for _, d := range run[:n] {
			if ctx.Err() != nil || !w.finish(ctx, d) {
				return false
			}
			done(d.msg)
		}
		run = run[n:]
	}
	return true
}

// window is how many records at the head of run would each be skipped or
// handled, all of those handled being events of one name: the stretch
// finishRun hands to the batch handler at once. One name, because a batch
// handler applies one kind of event at a time (a store's bookings in one
// transaction, say) and refuses a window that mixes them: an
// event.created among its bookings would otherwise send the whole window
// one by one.
func (w *worker) window(run []decoded) int {
	name := ""
	for i, d := range run {
		handled, skipped := w.handled(d)
		switch {
		case skipped:
		case !handled, name != "" && d.name != name:
			return max(i, 1)
		default:
			name = d.name
		}
	}
	return len(run)
}

// finish handles a decoded record until it is done and reports true, or
// reports false when ctx ended first; then the record is not done and
// must not be marked.
func (w *worker) finish(ctx context.Context, d decoded) bool {
	l := w.l
	msg, name, ev, err := d.msg, d.name, d.ev, d.err
	switch {
	case d.big:
		return w.deadLetter(ctx, msg, "", ReasonTooLarge, 0, err)
	case err != nil && name == "":
		return w.deadLetter(ctx, msg, name, ReasonMalformed, 0, err)
	case errors.Is(err, contracts.ErrUnknownEvent):
		return w.deadLetter(ctx, msg, name, ReasonUnknownEvent, 0, err)
	case !w.filter[name]:
		// Not ours: skipping it counts as processing it.
		return true
	case err != nil:
		return w.deadLetter(ctx, msg, name, ReasonInvalidPayload, 0, err)
	}

	downs := 0 // msgqueue.Unavailable answers in a row: not attempts
	for attempt := 1; ; attempt++ {
		err := w.call(ev)
		if msgqueue.IsUnavailable(err) {
			// The handler's store is down, not this record wrong: hand
			// it over again, as often as it takes, uncounted, and say
			// meanwhile that the partition cannot move.
			attempt--
			downs++
			l.stalls.set(msg.Partition, fmt.Errorf("partition %d of topic %s waits at offset %d: the handler cannot apply events (retrying): %w",
				msg.Partition, msg.Topic, msg.Offset, err))
			l.logger.Warn("kafka handler cannot apply events; handing the same record over again",
				"event", name, "topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset, "in_a_row", downs, "err", err)
			if !backoff.Sleep(ctx, l.opts.retry.Delay(downs)) {
				l.stalls.clear(msg.Partition)
				return false
			}
			continue
		}
		if downs > 0 { // the handler answers again
			l.stalls.clear(msg.Partition)
			downs = 0
		}
		if err == nil {
			return true
		}
		if msgqueue.IsPermanent(err) {
			return w.deadLetter(ctx, msg, name, ReasonPermanent, attempt, err)
		}
		if attempt >= l.opts.deliveryLimit {
			return w.deadLetter(ctx, msg, name, ReasonRetriesExhausted, attempt, err)
		}
		// Kafka has no per-record nack: retry this record in place. Nothing
		// after it on this partition runs meanwhile, so per-key order holds.
		l.logger.Warn("kafka handler failed; retrying the same record",
			"event", name, "topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset,
			"attempt", attempt, "of", l.opts.deliveryLimit, "err", err)
		if !backoff.Sleep(ctx, l.opts.retry.Delay(attempt)) {
			return false
		}
	}
}

// deadLetter copies the record to the dead-letter topic with headers
// saying why, until the copy is acknowledged or ctx ends; only an
// acknowledged copy lets the partition move on. A copy the topic refuses
// as too large is sent once more without key and value. A copy that keeps
// failing (the dead-letter topic is gone, the cluster refuses writes) is
// tried again with the longest backoff, and after the retry attempts the
// partition is reported stalled (Stalled, and so /healthz) until it moves.
func (w *worker) deadLetter(ctx context.Context, msg *sarama.ConsumerMessage, name, reason string, attempts int, cause error) bool {
	l := w.l
	defer l.stalls.clear(msg.Partition)
	dropBody := false
	for try := 1; ; try++ {
		err := l.dlq.send(ctx, w.deadLetterRecord(msg, name, reason, attempts, cause, dropBody))
		if err == nil {
			l.logger.Warn("kafka record dead-lettered",
				"reason", reason, "event", name, "topic", msg.Topic, "partition", msg.Partition,
				"offset", msg.Offset, "dlq", l.opts.dlqTopic, "body_dropped", dropBody, "err", cause)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if refusedAsTooLarge(err) && !dropBody {
			l.logger.Error("kafka: the dead-letter topic refused the copy as too large; sending it without key and value",
				"dlq", l.opts.dlqTopic, "partition", msg.Partition, "offset", msg.Offset, "err", err)
			dropBody = true
			continue
		}
		if try >= l.opts.deliveryLimit {
			l.stalls.set(msg.Partition, fmt.Errorf("partition %d of topic %s cannot move past offset %d: writing its dead-letter copy to %s failed %d times: %w",
				msg.Partition, msg.Topic, msg.Offset, l.opts.dlqTopic, try, err))
		}
		l.logger.Error("kafka: writing to the dead-letter topic failed; retrying",
			"dlq", l.opts.dlqTopic, "partition", msg.Partition, "offset", msg.Offset, "try", try, "err", err)
		if !backoff.Sleep(ctx, l.opts.retry.Delay(try)) {
			return false
		}
	}
}

// refusedAsTooLarge reports whether a produce error says the record is
// too large, which sending it again cannot fix.
func refusedAsTooLarge(err error) bool {
	return errors.Is(err, sarama.ErrMessageSizeTooLarge) || errors.Is(err, sarama.ErrMessageSetSizeTooLarge) ||
		errors.Is(err, sarama.ErrInvalidMessageSize)
}

// deadLetterRecord builds the copy of msg for the dead-letter topic; with
// dropBody, a copy without key and value.
func (w *worker) deadLetterRecord(msg *sarama.ConsumerMessage, name, reason string, attempts int, cause error, dropBody bool) *sarama.ProducerMessage {
	// The record's own headers, but none that would pass for ours.
	var kept []sarama.RecordHeader
	size := 0
	for _, h := range msg.Headers {
		if h != nil && !strings.HasPrefix(string(h.Key), msgqueue.DeadLetterHeaderPrefix) {
			kept = append(kept, *h)
			size += len(h.Key) + len(h.Value)
		}
	}
	var headers []sarama.RecordHeader
	add := func(k, v string) { headers = append(headers, sarama.RecordHeader{Key: []byte(k), Value: []byte(v)}) }
	if size <= msgqueue.MaxMessageSize {
		headers = kept
	} else {
		add(HeaderHeadersDropped, strconv.Itoa(len(msg.Headers)))
	}
	add(HeaderReason, reason)
	add(HeaderError, msgqueue.ErrorHeader(cause))
	add(HeaderAttempts, strconv.Itoa(attempts))
	if name != "" {
		add(HeaderEventName, name)
	}
	add(HeaderTopic, msg.Topic)
	add(HeaderPartition, strconv.FormatInt(int64(msg.Partition), 10))
	add(HeaderOffset, strconv.FormatInt(msg.Offset, 10))
	add(HeaderConsumer, w.consumer)

	rec := &sarama.ProducerMessage{Topic: w.l.opts.dlqTopic}
	if dropBody {
		add(HeaderBodyDropped, "true")
		add(msgqueue.HeaderOriginalSize, strconv.Itoa(len(msg.Value)))
		rec.Headers = headers
		return rec
	}
	if msg.Key != nil {
		key, cut := msgqueue.DeadLetterBody(msg.Key)
		if cut {
			add(HeaderKeyTruncated, "true")
		}
		rec.Key = sarama.ByteEncoder(key)
	}
	if msg.Value != nil {
		value, cut := msgqueue.DeadLetterBody(msg.Value)
		if cut {
			add(msgqueue.HeaderTruncated, "true")
			add(msgqueue.HeaderOriginalSize, strconv.Itoa(len(msg.Value)))
		}
		rec.Value = sarama.ByteEncoder(value)
	}
	rec.Headers = headers
	return rec
}

// stalls remembers the partitions that cannot move past a record, and
// why, for Stalled.
type stalls struct {
	mu sync.Mutex
	by map[int32]error
}

func (s *stalls) set(p int32, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.by == nil {
		s.by = map[int32]error{}
	}
	s.by[p] = err
}

func (s *stalls) clear(p int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.by, p)
}

// err joins the reasons, in partition order; nil when nothing is stuck.
func (s *stalls) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := slices.Sorted(maps.Keys(s.by))
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = s.by[p]
	}
	return errors.Join(errs...)
}
