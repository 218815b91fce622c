package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/IBM/sarama"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/internal/listenrules"
)

// Listener hands the events of the topic to a handler, either as a member of
// a consumer group (NewGroupListener) or by replaying the log from the
// oldest record (NewReplayListener). See the package documentation for the
// delivery rules.
type Listener struct {
	opts      options
	names     []string             // the events it was built for
	group     string               // empty in replay mode
	client    sarama.Client        // for reading
	cg        sarama.ConsumerGroup // group mode
	cons      sarama.Consumer      // replay mode
	dlqClient sarama.Client        // for dead-letter writes
	dlq       *producer
	caught    *catchUp
	logger    *slog.Logger

	life listenrules.Lifecycle // one Listen at a time, none after Close

	errorsDrained chan struct{} // group mode: the error logger returned

	stalls stalls    // partitions that cannot move past a record
	held   heldWatch // partitions held back by an open transaction (held.go)
}

var _ msgqueue.BatchListener = (*Listener)(nil)

// NewGroupListener joins the consumer group on the topic, for the events
// called names (at least one), creating the topic and its dead-letter
// topic if they do not exist. A group that has never committed starts at
// the oldest record. Options: WithTopic, WithDeadLetterTopic,
// WithPartitions, WithReplicationFactor, WithRetention, WithDeliveryLimit,
// WithRetryBackoff, WithCommitInterval, WithLogger, WithClientID.
func NewGroupListener(ctx context.Context, brokers []string, group string, names []string, opts ...Option) (*Listener, error) {
	if group == "" {
		return nil, errors.New("creating a Kafka group listener: the consumer group name is empty")
	}
	l, err := newListener(ctx, brokers, group, names, opts)
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
// oldest record, for the events called names (at least one), without a
// consumer group and without committing anything, creating the topic and
// its dead-letter topic if they do not exist. Use it
// to rebuild state from the log at start-up, and wait on CaughtUp before
// answering requests. Every start replays everything, so handlers must be
// idempotent, and a record dead-lettered once is dead-lettered again at the
// next start. Options as for NewGroupListener, except WithCommitInterval.
func NewReplayListener(ctx context.Context, brokers []string, names []string, opts ...Option) (*Listener, error) {
	l, err := newListener(ctx, brokers, "", names, opts)
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
func newListener(ctx context.Context, brokers []string, group string, names []string, opts []Option) (*Listener, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	if names, err = listenrules.Built("Kafka topic "+o.topic, names); err != nil {
		return nil, err
	}
	client, err := connect(ctx, brokers, consumerConfig(ctx, o, group == ""))
	if err != nil {
		return nil, err
	}
	l := &Listener{
		opts:          o,
		names:         names,
		group:         group,
		client:        client,
		caught:        newCatchUp(),
		logger:        o.logger,
		errorsDrained: make(chan struct{}),
		held:          heldWatch{limit: heldLimit, every: heldEvery},
	}
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

// Listen calls h for every event of the topic whose name is in names (all
// the names it was built for when names is empty), until ctx is cancelled
// or Close is called. It then waits for in-flight handlers, commits (group
// mode) and returns nil. h receives ctx. After Listen returned, Listen may
// be called again: a group listener rejoins the group, a replay listener
// replays the log again.
func (l *Listener) Listen(ctx context.Context, h msgqueue.Handler, names ...string) error {
	return l.ListenBatch(ctx, h, nil, names...)
}

// ListenBatch is Listen that hands a partition's records decoded together
// (up to 256 that had arrived, in offset order) to hb in one call, where
// they are all events h would get, of one name; a record that would be
// dead-lettered, or of another name, is finished alone, in its place. If hb returns an error, nothing was
// applied and each record goes to h alone, with its retries and dead
// letter (msgqueue.BatchHandler). With hb nil it is Listen.
func (l *Listener) ListenBatch(ctx context.Context, h msgqueue.Handler, hb msgqueue.BatchHandler, names ...string) error {
	if h == nil {
		return errors.New("listening on Kafka: the handler is nil")
	}
	where := "Kafka topic " + l.opts.topic
	filter, err := listenrules.Filter(l.names, names)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", where, err)
	}
	// stop ends on the caller's cancellation or on Close, whichever comes
	// first.
	stop, end, err := l.life.Begin(ctx, where)
	if err != nil {
		return err
	}
	defer end()

	// Watch for partitions an open transaction holds back while the
	// listener reads, and stop watching before it returns.
	watch, stopWatch := context.WithCancel(stop)
	var watching sync.WaitGroup
	watching.Go(func() { l.watchHeld(watch) })
	defer watching.Wait()
	defer stopWatch()

	w := &worker{l: l, handler: h, batch: hb, handlerCtx: ctx, filter: filter, consumer: "replay"}
	if l.group != "" {
		w.consumer = l.group
		return l.listenGroup(stop, w)
	}
	return l.listenReplay(stop, w)
}

// Stalled reports why the listener cannot make progress: a partition
// whose record it can neither process nor dead-letter (the dead-letter
// topic refuses every copy), named with its offset and the last error. It
// is nil while every partition moves; a service reports it on /healthz.
func (l *Listener) Stalled() error { return l.stalls.err() }

// Health reports what Stalled does, for /healthz, and a partition that
// another producer's transaction, left open, holds back (held.go): the
// emitter's Health covers the connection to the cluster. It asks the
// cluster nothing itself.
func (l *Listener) Health(context.Context) error {
	if err := l.Stalled(); err != nil {
		return fmt.Errorf("the Kafka listener is stuck: %w", err)
	}
	if err := l.heldErr(); err != nil {
		return fmt.Errorf("the Kafka listener is held back: %w", err)
	}
	return nil
}

// Close stops Listen, waits for in-flight handlers, commits the offsets
// marked so far (group mode), leaves the group and disconnects.
func (l *Listener) Close() error {
	if !l.life.Close() {
		return nil
	}
	l.life.Wait()
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
	return errors.Join(errs...)
}
