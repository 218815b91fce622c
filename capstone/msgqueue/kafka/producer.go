package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/IBM/sarama"

	"example.com/myevents/capstone/msgqueue"
)

// producer sends records and waits for each one's acknowledgement, from any
// number of goroutines at once. It drives a sarama AsyncProducer: every
// caller puts its record in, and a router hands each result back to the
// caller that sent it through a channel carried in the record's Metadata.
// Records of concurrent callers share produce requests, as with sarama's
// SyncProducer (which works the same way inside), but a caller can stop
// waiting when its context ends.
type producer struct {
	async sarama.AsyncProducer

	mu     sync.RWMutex // held for reading while a record goes in
	closed bool
	routed chan struct{} // closed when the router has returned every result
}

func newProducer(client sarama.Client) (*producer, error) {
	async, err := sarama.NewAsyncProducerFromClient(client)
	if err != nil {
		return nil, err
	}
	p := &producer{async: async, routed: make(chan struct{})}
	go p.route()
	return p, nil
}

// route returns each acknowledgement or error to the caller waiting for it,
// until the producer has shut down and both channels are closed.
func (p *producer) route() {
	defer close(p.routed)
	successes, errs := p.async.Successes(), p.async.Errors()
	for successes != nil || errs != nil {
		select {
		case msg, ok := <-successes:
			if !ok {
				successes = nil
				continue
			}
			msg.Metadata.(chan error) <- nil
		case perr, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			perr.Msg.Metadata.(chan error) <- perr.Err
		}
	}
}

// send writes msg and returns once the brokers acknowledged it, it failed,
// or ctx ended. When ctx ends while the record is with sarama, it may still
// be written: send returns a *msgqueue.UnconfirmedError whose Final gets
// sarama's answer when it comes (it always comes: sarama answers every
// record it took, at the latest when the producer closes).
func (p *producer) send(ctx context.Context, msg *sarama.ProducerMessage) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// Buffered, so the router never blocks on a caller that stopped waiting.
	result := make(chan error, 1)
	msg.Metadata = result

	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return msgqueue.ErrClosed
	}
	select {
	case p.async.Input() <- msg:
		p.mu.RUnlock()
	case <-ctx.Done():
		p.mu.RUnlock()
		return ctx.Err()
	}

	select {
	case err := <-result:
		return err
	case <-ctx.Done():
		final := make(chan error, 1)
		go func() { final <- refusedFor(<-result) }()
		return &msgqueue.UnconfirmedError{Err: fmt.Errorf("waiting for the acknowledgement: %w", ctx.Err()), Final: final}
	}
}

// close stops accepting records, waits until every record already sent is
// acknowledged or failed (their callers get the result), and shuts the
// producer down. It does not close the client.
func (p *producer) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.routed
		return
	}
	p.closed = true
	p.mu.Unlock()
	// AsyncClose flushes what is buffered, then closes Successes and Errors;
	// the router drains them, so every waiting caller gets its answer.
	p.async.AsyncClose()
	<-p.routed
}

// refusedFor marks a produce error that says for certain the record was
// not stored (msgqueue.ErrRefused). Any other, a lost connection or a
// timeout after sarama's retries, may follow a write whose answer was
// lost.
func refusedFor(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sarama.ErrMessageSizeTooLarge), errors.Is(err, sarama.ErrInvalidMessage),
		errors.Is(err, sarama.ErrInvalidMessageSize), errors.Is(err, sarama.ErrInvalidRecord),
		errors.Is(err, sarama.ErrUnknownTopicOrPartition), errors.Is(err, sarama.ErrTopicAuthorizationFailed),
		errors.Is(err, sarama.ErrClusterAuthorizationFailed), errors.Is(err, sarama.ErrNotEnoughReplicas):
		return fmt.Errorf("%w: %w", msgqueue.ErrRefused, err)
	}
	return err
}
