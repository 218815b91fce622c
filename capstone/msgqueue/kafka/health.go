package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// probeTimeout bounds each step of a health check: a check answers within
// a few seconds even when the cluster is gone.
const probeTimeout = 2 * time.Second

// probe answers an Emitter's Health. It has a client of its own, opened on
// the first check, that does not retry: the emitter's client retries
// metadata requests and would keep /healthz waiting.
type probe struct {
	brokers []string
	topic   string
	cfg     *sarama.Config

	mu     sync.Mutex
	client sarama.Client
	closed bool
}

func newProbe(brokers []string, o options) *probe {
	cfg := sarama.NewConfig()
	cfg.Version = ProtocolVersion
	cfg.ClientID = o.clientID + "-health"
	if o.tune != nil {
		o.tune(cfg)
	}
	cfg.Metadata.Retry.Max = 0
	cfg.Metadata.Full = false
	cfg.Metadata.AllowAutoTopicCreation = false
	cfg.Net.DialTimeout = probeTimeout
	cfg.Net.ReadTimeout = probeTimeout
	cfg.Net.WriteTimeout = probeTimeout
	return &probe{brokers: brokers, topic: o.topic, cfg: cfg}
}

// Health asks the cluster for the topic's metadata; an error says the
// cluster does not answer (within ctx, and within a few seconds).
func (e *Emitter) Health(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- e.probe.refresh() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("the Kafka cluster does not answer: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("the Kafka cluster does not answer: %w", ctx.Err())
	}
}

// refresh opens the client if needed and refreshes the topic's metadata.
func (p *probe) refresh() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return sarama.ErrClosedClient
	}
	if p.client == nil {
		c, err := sarama.NewClient(p.brokers, p.cfg)
		if err != nil {
			p.mu.Unlock()
			return err
		}
		p.client = c
	}
	c := p.client
	p.mu.Unlock()
	return c.RefreshMetadata(p.topic)
}

// close closes the client, if the first check opened one.
func (p *probe) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.client == nil {
		return nil
	}
	if err := p.client.Close(); err != nil && !errors.Is(err, sarama.ErrClosedClient) {
		return fmt.Errorf("closing the Kafka health client: %w", err)
	}
	return nil
}
