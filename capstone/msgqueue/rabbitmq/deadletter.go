package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"example.com/myevents/capstone/msgqueue"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Headers a Listener adds to a dead-lettered copy, beside the x-dlq-*
// headers of package msgqueue (reason, error, attempts, event name, and
// the original size of a truncated body) and the headers the message had
// (dropped, and counted in HeaderHeadersDropped, if the copy could not
// keep them within the connection's frame size).
const (
	HeaderQueue              = "x-dlq-queue"                // the queue it was read from
	HeaderOriginalExchange   = "x-dlq-original-exchange"    // the exchange it was published to
	HeaderOriginalRoutingKey = "x-dlq-original-routing-key" // its routing key
	HeaderHeadersDropped     = "x-dlq-headers-dropped"      // how many original headers were left out (too large to keep)
)

// deadLetterTimeout bounds how long a dead-letter copy may take to be
// confirmed before the listener falls back to rejecting the original.
const deadLetterTimeout = 10 * time.Second

// deadLetterer publishes dead-letter copies on a confirm-mode channel of
// its own, opened on first use: a copy the broker refuses closes that
// channel, never the one the deliveries arrive on.
type deadLetterer struct {
	conn    *amqp.Connection
	pub     *publisher // on the open dead-letter channel, if any
	dlx     string
	queue   string
	declare func() error // declares the listener's topology again
}

func newDeadLetterer(conn *amqp.Connection, l *Listener) *deadLetterer {
	return &deadLetterer{conn: conn, dlx: DeadLetterExchange(l.queue), queue: l.queue,
		declare: func() error { return l.declareOn(conn) }}
}

// channel returns the publisher on the open confirm-mode channel,
// opening one if needed. It publishes as the emitter does (mandatory,
// confirmed, returns matched by message ID), one copy at a time.
func (p *deadLetterer) channel() (*publisher, error) {
	if p.pub != nil && !p.pub.ch.IsClosed() {
		return p.pub, nil
	}
	ch, err := p.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("opening the dead-letter channel: %w", err)
	}
	if err := ch.Confirm(false /* no-wait */); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("putting the dead-letter channel in confirm mode: %w", err)
	}
	p.pub = newPublisher(ch, 1)
	return p.pub, nil
}

// publish sends the copy of d to the dead-letter exchange and waits for
// the broker's confirm, as send does. If the copy reached no queue (the
// dead-letter queue was deleted, or its binding), it declares the
// listener's topology again and sends the copy once more, rather than
// wait for the next topology check: the original is acknowledged only
// once a queue holds its copy.
func (p *deadLetterer) publish(ctx context.Context, d amqp.Delivery, name, reason string, attempts int, cause error) error {
	err := p.send(ctx, d, name, reason, attempts, cause)
	if !errors.Is(err, msgqueue.ErrUnroutable) {
		return err
	}
	if derr := p.declare(); derr != nil {
		return fmt.Errorf("%w, and declaring it again failed: %w", err, derr)
	}
	if err := p.send(ctx, d, name, reason, attempts, cause); err != nil {
		return fmt.Errorf("after declaring the dead-letter queue again: %w", err)
	}
	return nil
}

// send publishes the copy of d to the dead-letter exchange, mandatory,
// and waits for the broker's confirm. The copy keeps d's properties and
// headers (but not x-delivery-count, which the dead-letter queue counts
// anew, nor a sender's own x-dlq-* headers; none if the copy would not
// fit a frame with them, see fits), holds at most msgqueue.MaxMessageSize
// bytes of its body, and says why in x-dlq-* headers.
func (p *deadLetterer) send(ctx context.Context, d amqp.Delivery, name, reason string, attempts int, cause error) error {
	pub, err := p.channel()
	if err != nil {
		return err
	}
	// The x-dlq-* headers say why; the original headers go beside them
	// if the copy still fits a frame.
	why := amqp.Table{
		msgqueue.HeaderReason:    reason,
		msgqueue.HeaderError:     msgqueue.ErrorHeader(cause),
		msgqueue.HeaderAttempts:  int64(attempts),
		HeaderQueue:              p.queue,
		HeaderOriginalExchange:   d.Exchange,
		HeaderOriginalRoutingKey: d.RoutingKey,
	}
	if name != "" {
		why[msgqueue.HeaderEventName] = name
	}
	body, truncated := msgqueue.DeadLetterBody(d.Body)
	if truncated {
		why[msgqueue.HeaderTruncated] = strconv.FormatBool(truncated)
		why[msgqueue.HeaderOriginalSize] = int64(len(d.Body))
	}
	headers := amqp.Table{}
	for k, v := range d.Headers {
		// Not the broker's count, nor a sender's own x-dlq-* headers,
		// which would pass for ours.
		if k != "x-delivery-count" && !strings.HasPrefix(k, msgqueue.DeadLetterHeaderPrefix) {
			headers[k] = v
		}
	}
	maps.Copy(headers, why)
	if !p.fits(headers) {
		headers = why
		headers[HeaderHeadersDropped] = int64(len(d.Headers))
	}
	msg := amqp.Publishing{
		Headers:         headers,
		ContentType:     d.ContentType,
		ContentEncoding: d.ContentEncoding,
		DeliveryMode:    amqp.Persistent,
		CorrelationId:   d.CorrelationId,
		MessageId:       d.MessageId,
		Timestamp:       d.Timestamp,
		Type:            d.Type,
		AppId:           d.AppId,
		Body:            body,
	}
	ctx, cancel := context.WithTimeout(ctx, deadLetterTimeout)
	defer cancel()
	switch err := pub.publish(ctx, p.dlx, d.RoutingKey, msg); {
	case errors.Is(err, msgqueue.ErrUnroutable):
		return fmt.Errorf("the dead-letter copy reached no queue: %w", err)
	case errors.Is(err, errNotConfirmed):
		return fmt.Errorf("the broker did not take the dead-letter copy: %w", err)
	case err != nil:
		return fmt.Errorf("waiting for the confirm of the dead-letter copy: %w", err)
	}
	return nil
}

// headerRoom is what a dead-letter copy's header frame needs beside its
// headers: the frame's own bytes and the properties (a few short strings
// of at most 255 bytes each).
const headerRoom = 4 << 10

// fits reports whether a copy with headers h fits one frame: a message's
// properties and headers travel in one, which must fit the frame_max
// negotiated with the broker. A message whose headers barely fitted gives
// a copy, with its x-dlq-* headers added, that does not, and the broker
// closes the whole connection over it, the consuming channel with it: its
// deliveries would come back, again and again, until the queue's delivery
// limit dead-lettered them all, the valid ones too.
func (p *deadLetterer) fits(h amqp.Table) bool {
	max := p.conn.Config.FrameSize
	return max <= 0 || tableSize(h) <= max-headerRoom
}

// tableSize is at least the size of t in AMQP's field-table encoding.
func tableSize(t amqp.Table) int {
	n := 4
	for k, v := range t {
		n += 1 + len(k) + fieldSize(v)
	}
	return n
}

func fieldSize(v any) int {
	switch v := v.(type) {
	case string:
		return 5 + len(v)
	case []byte:
		return 5 + len(v)
	case amqp.Table:
		return 1 + tableSize(v)
	case []any:
		n := 5
		for _, e := range v {
			n += fieldSize(e)
		}
		return n
	default: // numbers, booleans, decimals, times, nil: 9 bytes at most
		return 9
	}
}

// close closes the dead-letter channel, if one is open.
func (p *deadLetterer) close() {
	if p.pub != nil {
		_ = p.pub.ch.Close()
	}
}
