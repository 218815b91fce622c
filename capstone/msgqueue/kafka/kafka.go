// Package kafka is the Kafka transport of msgqueue, built on IBM/sarama.
//
// Every event goes to one topic ("events" unless WithTopic says otherwise).
// The record key is the event's PartitionKey, so all events about one
// entity land on one partition and stay in order (the partitioner is the
// Java client's murmur2, so other clients agree on the partition); the
// record value is the envelope {"eventName": ..., "payload": {...}} from
// contracts.Wrap. Topics are created explicitly when missing, with
// WithPartitions partitions and retention.ms=-1 (keep forever), because the
// log is the event store a replay listener rebuilds its state from.
//
// An Emitter returns from Emit only once every in-sync replica has the
// record (acks=all), and its producer is idempotent, so a retried send is
// never written twice.
//
// A Listener reads the topic in one of two modes:
//
//   - NewGroupListener: a consumer group with committed offsets. A restarted
//     service resumes where it left off; a new group starts at the oldest
//     record. A record's offset is marked only after the handler returned
//     nil for it (or the record was skipped or dead-lettered); marks are
//     committed every second and when the listener stops.
//   - NewReplayListener: no group, nothing committed, every partition read
//     from the oldest offset still stored (never the literal 0, which
//     retention may have deleted). This is event sourcing: the service
//     rebuilds its state from the whole log at every start. CaughtUp is
//     closed once the handler has processed everything that was in the log
//     when Listen started. That backlog it reads with fetches of its own,
//     the records written after it with sarama's consumer (fetch.go).
//
// Both modes read with read_committed isolation: a record of another
// producer's aborted transaction is never handed over, and a transaction
// still open is not waited for (tail.go).
//
// Delivery rules, in both modes: partitions are read concurrently, but the
// handler is called for one record at a time, and for the records of one
// partition (so all the events of one key) in log order. Each partition's
// records are decoded on a goroutine of their own, ahead of the handler.
// Listener.ListenBatch hands a partition's records that arrived together,
// all events of one name, to a msgqueue.BatchHandler in one call (a
// window), and each record to the handler alone when that call fails; the
// rules below then apply to each of them. A msgqueue.Unavailable error
// (the handler's store is down) hands the same record over again after a
// growing backoff, as often as it takes, without counting it against the
// delivery limit, and Stalled names the partition meanwhile. Any other
// handler error means "not processed": Kafka has no per-record nack, so the same record
// is handed to the handler again, in place, after a backoff
// (WithRetryBackoff), and nothing behind it on that partition is processed
// meanwhile (other partitions go on). After the last delivery the limit
// allows (WithDeliveryLimit, msgqueue.DefaultDeliveryLimit), or at once for a msgqueue.Permanent error, a
// value larger than msgqueue.MaxMessageSize (64 KiB), a malformed
// envelope, an event name no contract knows or a payload that does not
// decode or breaks the limits of package contracts, the raw record is
// copied to the dead-letter topic ("events.dlq") with headers saying why
// and where it came from, and the partition moves on. The copy holds at
// most 64 KiB of the key and of the value (more is cut, and a header says
// so), so the copy of a record that barely fitted the broker still fits;
// should the dead-letter topic refuse even that as too large, the copy
// goes without key and value. A copy that still cannot be written is
// retried with backoff, and after as many tries as the delivery limit the
// listener reports
// the partition it cannot move past in Stalled (and Health), which the
// services turn into a 503 on /healthz. Records whose event name the
// listener was not asked for are skipped and count as processed. Delivery is at least once:
// handlers must be idempotent.
//
// An Emitter refuses an event whose envelope is larger than 64 KiB. Its
// Health asks the cluster for the topic's metadata, on a client of its own
// that gives up after two seconds.
//
// Usage:
//
//	em, err := kafka.NewEmitter(ctx, brokers)
//	err = em.Emit(ctx, contracts.EventCreated{...})
//
//	l, err := kafka.NewReplayListener(ctx, brokers,
//		[]string{contracts.EventCreatedName, contracts.EventBookedName})
//	go l.Listen(ctx, handle)
//	<-l.CaughtUp() // then serve requests
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/capstone/internal/backoff"
	"example.com/myevents/capstone/msgqueue"
)

// Defaults.
const (
	DefaultTopic          = "events"
	DefaultPartitions     = 6
	DefaultRetryFirst     = 100 * time.Millisecond
	DefaultRetryLongest   = 5 * time.Second
	DefaultCommitInterval = time.Second
)

// ProtocolVersion is the Kafka protocol version the transport speaks,
// set explicitly: Apache Kafka 4.x needs at least 2.1, and the embedded
// kfake cluster accepts it too.
var ProtocolVersion = sarama.V3_6_0_0

// options collects what the Option functions set.
type options struct {
	topic          string
	dlqTopic       string
	partitions     int32
	replication    int16
	retention      time.Duration
	logger         *slog.Logger
	clientID       string
	deliveryLimit  int
	retry          backoff.Policy
	commitInterval time.Duration
	tune           func(*sarama.Config)
}

// Option configures an Emitter or a Listener. Options that only concern
// listening are ignored by an Emitter.
type Option func(*options)

// WithTopic sets the topic events are written to and read from (default
// "events"). The dead-letter topic follows it ("<topic>.dlq") unless
// WithDeadLetterTopic sets it.
func WithTopic(name string) Option { return func(o *options) { o.topic = name } }

// WithDeadLetterTopic sets the topic that receives records a listener gives
// up on (default "<topic>.dlq").
func WithDeadLetterTopic(name string) Option { return func(o *options) { o.dlqTopic = name } }

// WithPartitions sets the partition count used when the topic has to be
// created (default 6). It caps how many members of one consumer group can
// share the work. An existing topic is left as it is.
func WithPartitions(n int32) Option { return func(o *options) { o.partitions = n } }

// WithReplicationFactor sets the replication factor used when a topic has to
// be created (default -1: the broker's default.replication.factor).
func WithReplicationFactor(n int16) Option { return func(o *options) { o.replication = n } }

// WithRetention sets retention.ms for topics this package creates. The
// default keeps records forever (-1), because a replay listener rebuilds its
// state from the whole log: a time limit would silently drop old events.
func WithRetention(d time.Duration) Option { return func(o *options) { o.retention = d } }

// WithLogger sets where diagnostics go (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithClientID sets the client ID the brokers see in their logs and metrics
// (default "myevents").
func WithClientID(id string) Option { return func(o *options) { o.clientID = id } }

// WithDeliveryLimit sets how often a Listener hands a record to the
// handler at most: a handler error on the nth delivery dead-letters it
// (default msgqueue.DefaultDeliveryLimit, 5). It also bounds the tries of
// a dead-letter write before the partition is reported stalled.
func WithDeliveryLimit(n int) Option { return func(o *options) { o.deliveryLimit = n } }

// WithRetryBackoff sets how long a Listener waits after a handler error
// before it hands the same record over again: first after the first
// failure, doubling with each delivery up to longest (default 100ms up to
// 5s).
func WithRetryBackoff(first, longest time.Duration) Option {
	return func(o *options) { o.retry = backoff.Policy{First: first, Longest: longest} }
}

// WithCommitInterval sets how often a group listener commits the offsets it
// marked (default 1s). They are also committed when it stops.
func WithCommitInterval(d time.Duration) Option { return func(o *options) { o.commitInterval = d } }

// WithSaramaConfig lets f adjust the sarama configuration after this
// package has set its own: for TLS, SASL or a custom dialer. Changing the
// acks, idempotence or offset settings breaks the guarantees documented
// here.
func WithSaramaConfig(f func(*sarama.Config)) Option { return func(o *options) { o.tune = f } }

// buildOptions applies opts over the defaults and checks the result.
func buildOptions(opts []Option) (options, error) {
	o := options{
		topic:          DefaultTopic,
		partitions:     DefaultPartitions,
		replication:    -1,
		retention:      -1,
		logger:         slog.Default(),
		clientID:       "myevents",
		deliveryLimit:  msgqueue.DefaultDeliveryLimit,
		retry:          backoff.Policy{First: DefaultRetryFirst, Longest: DefaultRetryLongest},
		commitInterval: DefaultCommitInterval,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.dlqTopic == "" {
		o.dlqTopic = o.topic + ".dlq"
	}
	switch {
	case o.topic == "":
		return o, errors.New("kafka options: the topic name is empty")
	case o.dlqTopic == o.topic:
		return o, fmt.Errorf("kafka options: the dead-letter topic must differ from the topic %q", o.topic)
	case o.partitions < 1:
		return o, fmt.Errorf("kafka options: partitions must be at least 1, got %d", o.partitions)
	case o.deliveryLimit < 1:
		return o, fmt.Errorf("kafka options: the delivery limit must be at least 1, got %d", o.deliveryLimit)
	case o.retry.First < 0 || o.retry.Longest < o.retry.First:
		return o, fmt.Errorf("kafka options: the retry backoff's first wait %v must be >= 0 and <= its longest %v", o.retry.First, o.retry.Longest)
	case o.commitInterval <= 0:
		return o, fmt.Errorf("kafka options: commit interval must be positive, got %v", o.commitInterval)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// baseConfig is the sarama configuration every client starts from.
func baseConfig(ctx context.Context, o options) *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = ProtocolVersion
	cfg.ClientID = o.clientID
	// Dial no longer than the caller is willing to wait.
	cfg.Net.DialTimeout = 10 * time.Second
	if deadline, ok := ctx.Deadline(); ok {
		if d := time.Until(deadline); d > 0 && d < cfg.Net.DialTimeout {
			cfg.Net.DialTimeout = d
		}
	}
	// Topics are created explicitly, with the partition count and retention
	// chosen here, never as a side effect of asking for their metadata.
	cfg.Metadata.AllowAutoTopicCreation = false
	return cfg
}

// producerConfig is for the Emitter and a Listener's dead-letter writes,
// with the producer guarantees below.
func producerConfig(ctx context.Context, o options) *sarama.Config {
	cfg := baseConfig(ctx, o)
	SetProducerGuarantees(cfg)
	if o.tune != nil {
		o.tune(cfg)
	}
	return cfg
}

// SetProducerGuarantees sets what every record the Emitter writes gets: it
// counts as sent once all in-sync replicas have it, and the idempotent
// producer numbers its batches so that the broker drops a retried
// duplicate, which requires one request in flight per connection.
// Benchmarks give a raw sarama producer the same.
func SetProducerGuarantees(cfg *sarama.Config) {
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Idempotent = true
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.Retry.Max = 5
	cfg.Producer.Return.Successes = true
	cfg.Producer.Return.Errors = true
	// The same partitioner as the Java client's and kafka-python's
	// default, so a key lands on the same partition whichever of them
	// wrote it. kcat and the other librdkafka clients hash with CRC32
	// unless told -X partitioner=murmur2_random.
	cfg.Producer.Partitioner = sarama.NewMurmur2Partitioner
}

// replayReadAhead is how many fetched records a replay's partition
// consumer may hold for its reader (sarama's ChannelBufferSize; the
// default is 256). sarama fetches a partition again only once the
// previous answer, about 4,000 records of 250 bytes in 1 MB, is all in
// that buffer: with 256, a replay that applies what it reads stops
// fetching while it applies, and applies nothing while it fetches. With
// room for a few answers, the next fetch overlaps the applying
// (docs/performance.md, "Reading ahead"). The price is memory while the
// reader is behind: up to about 4 MB of fetched records per partition.
// A replay reads its backlog with fetches of its own (fetch.go), so this
// serves the records written after it, and a replay whose own fetches
// stopped early.
const replayReadAhead = 16384

// metadataRefresh is how often a listener's client refreshes the topic's
// metadata, and so how soon it sees a partition added to the topic.
const metadataRefresh = 30 * time.Second

// consumerConfig is for a Listener's reads, a replay's when replay is
// set. It gets its own client: on a connection shared with the producer,
// a produce request (one in flight at a time) would wait behind a fetch
// that the broker holds open for up to Consumer.MaxWaitTime when there is
// nothing new to read.
func consumerConfig(ctx context.Context, o options, replay bool) *sarama.Config {
	cfg := baseConfig(ctx, o)
	// A new group starts at the oldest record, never at the literal offset
	// 0, which no longer exists once retention deleted it.
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = true
	cfg.Consumer.Offsets.AutoCommit.Interval = o.commitInterval
	cfg.Consumer.Return.Errors = true
	// Records of an aborted transaction (another producer's) never
	// happened: never hand them over (tail.go).
	cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	// Partitions added to the topic show in the metadata at its next
	// refresh: a group rebalances onto them, a replay starts reading them.
	// sarama's default, 10 minutes, left their events unread for that long.
	cfg.Metadata.RefreshFrequency = metadataRefresh
	if replay {
		cfg.ChannelBufferSize = replayReadAhead
	}
	if o.tune != nil {
		o.tune(cfg)
	}
	return cfg
}

// connect opens a client, with an error that says what to do when no
// broker answers.
func connect(ctx context.Context, brokers []string, cfg *sarama.Config) (sarama.Client, error) {
	where := strings.Join(brokers, ",")
	if len(brokers) == 0 {
		return nil, errors.New("connecting to Kafka: no broker address given; set KAFKA_BROKERS (host:port, comma-separated)")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("connecting to Kafka at %s: %w", where, err)
	}
	client, err := sarama.NewClient(brokers, cfg)
	if err != nil {
		if errors.Is(err, sarama.ErrOutOfBrokers) {
			return nil, fmt.Errorf("connecting to Kafka at %s: no broker answered (%w); start Kafka there or point KAFKA_BROKERS at a running broker", where, err)
		}
		return nil, fmt.Errorf("connecting to Kafka at %s: %w", where, err)
	}
	return client, nil
}

// ensureTopic creates topic unless it exists already. Creating is explicit
// so that the partition count and retention are ours, not the broker's
// auto-creation defaults.
func ensureTopic(ctx context.Context, client sarama.Client, o options, topic string, partitions int32) error {
	// A cluster admin built from our client must not be closed: that would
	// close the client too. It holds nothing else.
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	// One metadata request, without the client's retries on an unknown
	// topic.
	meta, err := admin.DescribeTopics([]string{topic})
	if err != nil {
		return fmt.Errorf("looking up topic %s: %w", topic, err)
	}
	if len(meta) == 1 && meta[0].Err == sarama.ErrNoError {
		if n := int32(len(meta[0].Partitions)); n != partitions {
			o.logger.Debug("kafka topic exists with another partition count; left as is",
				"topic", topic, "partitions", n, "wanted", partitions)
		}
		return nil
	}

	retention := "-1"
	if o.retention >= 0 {
		retention = fmt.Sprint(o.retention.Milliseconds())
	}
	err = admin.CreateTopic(topic, &sarama.TopicDetail{
		NumPartitions:     partitions,
		ReplicationFactor: o.replication,
		ConfigEntries:     map[string]*string{"retention.ms": &retention},
	}, false)
	switch {
	case errors.Is(err, sarama.ErrTopicAlreadyExists):
		// Another service created it in the meantime.
	case err != nil:
		return fmt.Errorf("creating topic %s with %d partitions: %w", topic, partitions, err)
	default:
		o.logger.Info("kafka topic created", "topic", topic, "partitions", partitions)
	}
	// Wait until the brokers answer metadata for it, so the first produce
	// or consume does not race the creation.
	for attempt := 0; ; attempt++ {
		if err := client.RefreshMetadata(topic); err == nil {
			if ps, err := client.Partitions(topic); err == nil && len(ps) > 0 {
				return nil
			}
		}
		if attempt == 50 {
			return fmt.Errorf("creating topic %s: its metadata did not appear", topic)
		}
		if !backoff.Sleep(ctx, 100*time.Millisecond) {
			return fmt.Errorf("creating topic %s: %w", topic, ctx.Err())
		}
	}
}
