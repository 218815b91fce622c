package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/IBM/sarama"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
)

// maxConsumeFailures is how many times in a row joining the consumer group
// may fail before Listen gives up. Sarama already retries each join.
const maxConsumeFailures = 5

// Listener hands the events of the topic to a handler, either as a member of
// a consumer group (NewGroupListener) or by replaying the log from the
// oldest record (NewReplayListener). See the package documentation for the
// delivery rules.
type Listener struct {
	opts      options
	group     string               // empty in replay mode
	client    sarama.Client        // for reading
	cg        sarama.ConsumerGroup // group mode
	cons      sarama.Consumer      // replay mode
	dlqClient sarama.Client        // for dead-letter writes
	dlq       *producer
	caught    *catchUp
	logger    *slog.Logger

	// stop ends Listen; Close calls it.
	stopCtx context.Context
	stop    context.CancelFunc

	mu        sync.Mutex
	closed    bool
	listening bool
	done      chan struct{} // closed when Listen returned; nil before Listen

	errorsDrained chan struct{} // group mode: the error logger returned

	stalls stalls // partitions that cannot move past a record
}

var _ msgqueue.Listener = (*Listener)(nil)

// NewGroupListener joins the consumer group on the topic, creating the
// topic and its dead-letter topic if they do not exist. A group that has
// never committed starts at the oldest record. Options: WithTopic,
// WithDeadLetterTopic, WithPartitions, WithReplicationFactor, WithRetention,
// WithEvents, WithRetry, WithCommitInterval, WithLogger, WithClientID.
func NewGroupListener(ctx context.Context, brokers []string, group string, opts ...Option) (*Listener, error) {
	if group == "" {
		return nil, errors.New("creating a Kafka group listener: the consumer group name is empty")
	}
	l, err := newListener(ctx, brokers, group, opts)
	if err != nil {
		return nil, err
	}
	l.cg, err = sarama.NewConsumerGroupFromClient(group, l.client)
	if err != nil {
		l.release()
		return nil, fmt.Errorf("joining Kafka consumer group %s: %w", group, err)
	}
	// Consumer errors (a failed fetch or commit) are retried by sarama;
	// log them so they are not invisible.
	go func() {
		defer close(l.errorsDrained)
		for err := range l.cg.Errors() {
			l.logger.Warn("kafka consumer group error", "group", group, "topic", l.opts.topic, "err", err)
		}
	}()
	return l, nil
}

// NewReplayListener prepares to read every partition of the topic from the
// oldest record, without a consumer group and without committing anything,
// creating the topic and its dead-letter topic if they do not exist. Use it
// to rebuild state from the log at start-up, and wait on CaughtUp before
// answering requests. Every start replays everything, so handlers must be
// idempotent, and a record dead-lettered once is dead-lettered again at the
// next start. Options as for NewGroupListener, except WithCommitInterval.
func NewReplayListener(ctx context.Context, brokers []string, opts ...Option) (*Listener, error) {
	l, err := newListener(ctx, brokers, "", opts)
	if err != nil {
		return nil, err
	}
	l.cons, err = sarama.NewConsumerFromClient(l.client)
	if err != nil {
		l.release()
		return nil, fmt.Errorf("starting a Kafka consumer: %w", err)
	}
	return l, nil
}

// newListener does what both modes share: connect, create the topics,
// start the dead-letter producer.
func newListener(ctx context.Context, brokers []string, group string, opts []Option) (*Listener, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	for _, n := range o.names {
		if _, err := contracts.New(n); err != nil {
			return nil, fmt.Errorf("kafka options: %w", err)
		}
	}
	client, err := connect(ctx, brokers, consumerConfig(ctx, o))
	if err != nil {
		return nil, err
	}
	l := &Listener{
		opts:          o,
		group:         group,
		client:        client,
		caught:        newCatchUp(),
		logger:        o.logger,
		errorsDrained: make(chan struct{}),
	}
	l.stopCtx, l.stop = context.WithCancel(context.Background())
	if err := ensureTopic(ctx, client, o, o.topic, o.partitions); err != nil {
		l.release()
		return nil, err
	}
	// One partition keeps the dead letters in the order they happened.
	if err := ensureTopic(ctx, client, o, o.dlqTopic, 1); err != nil {
		l.release()
		return nil, err
	}
	if l.dlqClient, err = connect(ctx, brokers, producerConfig(ctx, o)); err != nil {
		l.release()
		return nil, err
	}
	if l.dlq, err = newProducer(l.dlqClient); err != nil {
		l.release()
		return nil, fmt.Errorf("starting the Kafka dead-letter producer: %w", err)
	}
	return l, nil
}

// CaughtUp is closed once the handler has processed (handled, skipped or
// dead-lettered) every record that was in the log when Listen started.
//
// In replay mode that is every partition's high-water mark captured at the
// start of Listen. In group mode it is the high-water mark of each
// partition assigned in the first group session, captured when it was
// assigned (if that session ends first, the next session's assignment
// counts). It is never closed if Listen is not called.
func (l *Listener) CaughtUp() <-chan struct{} { return l.caught.done }

// Listen calls h for every event of the topic whose name is in names (the
// names given by WithEvents, else every contract, when names is empty),
// until ctx is cancelled or Close is called. It then waits for in-flight
// handlers, commits (group mode) and returns nil. h receives ctx. A
// Listener listens once: a second call returns an error.
func (l *Listener) Listen(ctx context.Context, h msgqueue.Handler, names ...string) error {
	if h == nil {
		return errors.New("listening on Kafka: the handler is nil")
	}
	filter, err := l.filter(names)
	if err != nil {
		return err
	}

	l.mu.Lock()
	switch {
	case l.closed:
		l.mu.Unlock()
		return fmt.Errorf("listening on Kafka topic %s: %w", l.opts.topic, msgqueue.ErrClosed)
	case l.listening:
		l.mu.Unlock()
		return fmt.Errorf("listening on Kafka topic %s: Listen was already called on this listener", l.opts.topic)
	}
	l.listening = true
	l.done = make(chan struct{})
	l.mu.Unlock()
	defer close(l.done)

	// Stop on the caller's cancellation or on Close, whichever comes first.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(l.stopCtx, cancel)()

	w := &worker{l: l, handler: h, handlerCtx: ctx, filter: filter, consumer: "replay"}
	if l.group != "" {
		w.consumer = l.group
		return l.listenGroup(runCtx, w)
	}
	return l.listenReplay(runCtx, w)
}

// filter turns the names to listen for into a set, refusing names no
// contract has (they could never be decoded).
func (l *Listener) filter(names []string) (map[string]bool, error) {
	if len(names) == 0 {
		names = l.opts.names
	}
	if len(names) == 0 {
		names = contracts.Names()
	}
	set := make(map[string]bool, len(names))
	for _, n := range names {
		if _, err := contracts.New(n); err != nil {
			return nil, fmt.Errorf("listening on Kafka topic %s: %w", l.opts.topic, err)
		}
		set[n] = true
	}
	return set, nil
}

// Stalled reports why the listener cannot make progress: a partition
// whose record it can neither process nor dead-letter (the dead-letter
// topic refuses every copy), named with its offset and the last error. It
// is nil while every partition moves; a service reports it on /healthz.
func (l *Listener) Stalled() error { return l.stalls.err() }

// Close stops Listen, waits for in-flight handlers, commits the offsets
// marked so far (group mode), leaves the group and disconnects.
func (l *Listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	done := l.done
	l.mu.Unlock()

	l.stop()
	if done != nil {
		<-done
	}
	return l.release()
}

// release closes what the listener opened, in reverse order.
func (l *Listener) release() error {
	var errs []error
	if l.cg != nil {
		// Leaves the group so the others take over its partitions at once.
		if err := l.cg.Close(); err != nil {
			errs = append(errs, fmt.Errorf("leaving Kafka consumer group %s: %w", l.group, err))
		}
		<-l.errorsDrained
	}
	if l.cons != nil {
		if err := l.cons.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing the Kafka consumer: %w", err))
		}
	}
	if l.dlq != nil {
		l.dlq.close()
	}
	for _, c := range []sarama.Client{l.dlqClient, l.client} {
		if c == nil {
			continue
		}
		if err := c.Close(); err != nil && !errors.Is(err, sarama.ErrClosedClient) {
			errs = append(errs, fmt.Errorf("closing a Kafka client: %w", err))
		}
	}
	if l.stop != nil {
		l.stop()
	}
	return errors.Join(errs...)
}

// listenGroup consumes as a group member, session after session (a
// rebalance ends a session), until ctx ends.
func (l *Listener) listenGroup(ctx context.Context, w *worker) error {
	l.logger.Info("kafka listener started", "mode", "group", "group", l.group, "topic", l.opts.topic)
	gh := &groupHandler{w: w}
	failures := 0
	for {
		err := l.cg.Consume(ctx, []string{l.opts.topic}, gh)
		switch {
		case ctx.Err() != nil, errors.Is(err, sarama.ErrClosedConsumerGroup):
			return nil
		case err == nil:
			failures = 0 // the session ended for a rebalance: join again
			continue
		}
		failures++
		if failures >= maxConsumeFailures {
			return fmt.Errorf("consuming Kafka topic %s as group %s: %w", l.opts.topic, l.group, err)
		}
		l.logger.Warn("kafka consumer group session failed; joining again", "group", l.group, "err", err)
		if !pause(ctx, l.opts.delay(failures)) {
			return nil
		}
	}
}

// groupHandler is the sarama side of a group session.
type groupHandler struct{ w *worker }

// Setup runs when the session has its partitions, before any record.
func (g *groupHandler) Setup(sess sarama.ConsumerGroupSession) error {
	l := g.w.l
	targets := make(map[int32]int64)
	for _, p := range sess.Claims()[l.opts.topic] {
		newest, err := l.client.GetOffset(l.opts.topic, p, sarama.OffsetNewest)
		if err != nil {
			l.logger.Warn("kafka: reading a high-water mark failed; not waiting for that partition to catch up",
				"topic", l.opts.topic, "partition", p, "err", err)
			continue
		}
		targets[p] = newest
	}
	l.caught.expect(targets)
	return nil
}

// Cleanup runs after every ConsumeClaim returned: commit what they marked
// now, rather than at the next tick.
func (g *groupHandler) Cleanup(sess sarama.ConsumerGroupSession) error {
	sess.Commit()
	return nil
}

// ConsumeClaim processes one partition, one record at a time, until the
// session ends.
func (g *groupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	l := g.w.l
	p := claim.Partition()
	start := claim.InitialOffset()
	if start < 0 { // "oldest" or "newest": ask which offset that is now
		if off, err := l.client.GetOffset(claim.Topic(), p, start); err == nil {
			start = off
		}
	}
	l.caught.reached(p, start)

	ctx := sess.Context()
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg, ok := <-claim.Messages():
			if !ok || ctx.Err() != nil {
				// The session is ending: leave the record to the partition's
				// next owner.
				return nil
			}
			if !g.w.process(ctx, msg) {
				return nil
			}
			// Only now may the offset move past this record.
			sess.MarkMessage(msg, "")
			l.caught.reached(p, msg.Offset+1)
		}
	}
}

// listenReplay reads every partition from the oldest record until ctx ends.
func (l *Listener) listenReplay(ctx context.Context, w *worker) error {
	topic := l.opts.topic
	if err := l.client.RefreshMetadata(topic); err != nil {
		return fmt.Errorf("reading metadata of Kafka topic %s: %w", topic, err)
	}
	partitions, err := l.client.Partitions(topic)
	if err != nil {
		return fmt.Errorf("listing partitions of Kafka topic %s: %w", topic, err)
	}

	// Capture where the log ends now: CaughtUp waits for exactly that.
	targets := make(map[int32]int64, len(partitions))
	starts := make(map[int32]int64, len(partitions))
	for _, p := range partitions {
		if targets[p], err = l.client.GetOffset(topic, p, sarama.OffsetNewest); err != nil {
			return fmt.Errorf("reading the end offset of Kafka topic %s partition %d: %w", topic, p, err)
		}
		if starts[p], err = l.client.GetOffset(topic, p, sarama.OffsetOldest); err != nil {
			return fmt.Errorf("reading the oldest offset of Kafka topic %s partition %d: %w", topic, p, err)
		}
	}
	l.caught.expect(targets)
	for p, start := range starts {
		l.caught.reached(p, start) // an empty partition is caught up already
	}

	// Start at the oldest record still stored, never at the literal 0,
	// which retention may have deleted.
	pcs := make(map[int32]sarama.PartitionConsumer, len(partitions))
	defer func() {
		for p, pc := range pcs {
			if err := pc.Close(); err != nil {
				l.logger.Warn("kafka: closing a partition consumer", "topic", topic, "partition", p, "err", err)
			}
		}
	}()
	for _, p := range partitions {
		pc, err := l.cons.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			return fmt.Errorf("reading Kafka topic %s partition %d from the oldest offset: %w", topic, p, err)
		}
		pcs[p] = pc
	}
	l.logger.Info("kafka listener started", "mode", "replay", "topic", topic, "partitions", len(partitions))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		failOnce sync.Once
		failure  error
	)
	for p, pc := range pcs {
		wg.Go(func() {
			if err := l.replayPartition(ctx, w, p, pc); err != nil {
				failOnce.Do(func() { failure = err })
				cancel()
			}
		})
	}
	wg.Wait()
	return failure
}

// replayPartition processes one partition's records in order until ctx
// ends.
func (l *Listener) replayPartition(ctx context.Context, w *worker, p int32, pc sarama.PartitionConsumer) error {
	errs := pc.Errors()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			l.logger.Warn("kafka partition consumer error", "topic", l.opts.topic, "partition", p, "err", err)
		case msg, ok := <-pc.Messages():
			if !ok {
				return fmt.Errorf("reading Kafka topic %s partition %d: the partition consumer stopped", l.opts.topic, p)
			}
			if ctx.Err() != nil || !w.process(ctx, msg) {
				return nil
			}
			l.caught.reached(p, msg.Offset+1)
		}
	}
}
