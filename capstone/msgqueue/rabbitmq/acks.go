package rabbitmq

import amqp "github.com/rabbitmq/amqp091-go"

// Acknowledging a window at once (lab 14). An ack is a frame to the broker
// and work for it, one per message; a multiple-ack (Ack(tag, true))
// settles every unsettled delivery of the channel up to tag with one
// frame. So the listener does not acknowledge a delivery the moment its
// handler returned nil: it notes it, takes whatever other deliveries have
// arrived meanwhile (up to the prefetch), and acknowledges them together
// as soon as none is waiting. Still nothing is acknowledged before its
// handler returned nil: only the acknowledgement is later.
//
// A multiple-ack must never settle a delivery that is not done: one
// waiting out a retry backoff holds its tag unsettled, so while any such
// delivery has a lower tag than the last one noted, the noted ones are
// acknowledged one by one instead. Dead letters and retries are settled on
// their own, at once, as before. A channel that broke takes the noted
// deliveries back to the queue with it; they come again and their
// handlers, idempotent, see them twice.

// acks are the deliveries of a session handled but not yet acknowledged.
type acks struct {
	noted []amqp.Delivery
}

// note records that d's handler returned nil.
func (s *session) note(d amqp.Delivery) { s.acks.noted = append(s.acks.noted, d) }

// noted reports whether deliveries wait for their acknowledgement, and
// whether they fill the prefetch (acknowledge them now).
func (s *session) noted() (any, full bool) {
	n := len(s.acks.noted)
	return n > 0, n >= max(s.l.cfg.prefetch, 1)
}

// flushAcks acknowledges the noted deliveries: with one multiple-ack when
// no delivery waiting out a retry has a lower tag, else one by one.
func (s *session) flushAcks() {
	noted := s.acks.noted
	s.acks.noted = s.acks.noted[:0]
	if len(noted) == 0 {
		return
	}
	// The highest tag, not the last noted: a window notes a skipped
	// delivery before the ones its batch handler applied.
	last := noted[0]
	for _, d := range noted {
		if d.DeliveryTag > last.DeliveryTag {
			last = d
		}
	}
	for tag := range s.retries.timers {
		if tag < last.DeliveryTag {
			for _, d := range noted {
				s.ack(s.l.log, d)
			}
			return
		}
	}
	if err := s.ch.Ack(last.DeliveryTag, true /* multiple: every unsettled delivery up to this tag */); err != nil {
		// The channel is gone, and with it the broker's record of these
		// deliveries: the messages are back in the queue and come again.
		s.l.ackFailed.Add(int64(len(noted)))
		s.l.log.Warn("acknowledging failed; the messages will be delivered again", "messages", len(noted), "err", err)
		return
	}
	s.l.acked.Add(int64(len(noted)))
}
