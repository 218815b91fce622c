package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

func TestMain(m *testing.M) { brokertest.Main(m) }

// wait bounds every wait for the broker in these tests.
const wait = 20 * time.Second

// testLogger sends the transport's diagnostics to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testConfig is a sarama configuration for the tests' own clients, which
// check what the broker holds independently of the transport.
func testConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Metadata.AllowAutoTopicCreation = false
	cfg.Producer.Return.Successes = true
	return cfg
}

// env is one test's isolated topic on the shared cluster.
type env struct {
	t       *testing.T
	brokers []string
	topic   string
	dlq     string
	admin   sarama.ClusterAdmin
}

// newEnv gives the test a unique topic name (and its .dlq); the topics the
// test creates are deleted when it ends.
func newEnv(t *testing.T) *env {
	t.Helper()
	k := brokertest.Kafka(t)
	e := &env{t: t, brokers: k.Brokers, topic: brokertest.Name(t, "events")}
	e.dlq = e.topic + ".dlq"
	t.Cleanup(func() {
		admin := e.adminClient()
		for _, topic := range []string{e.topic, e.dlq} {
			if err := admin.DeleteTopic(topic); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
				t.Logf("deleting topic %s: %v", topic, err)
			}
		}
		admin.Close()
	})
	return e
}

// newEnvOwnKafka is newEnv on a kfake cluster of the test's own, of the
// given number of brokers, for a test that fails or holds the cluster's
// requests (Control) or moves its partitions, which would disturb the
// tests sharing brokertest's cluster.
func newEnvOwnKafka(t *testing.T, brokers int) (*env, *kfake.Cluster) {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(brokers))
	if err != nil {
		t.Fatalf("starting a Kafka of the test's own: %v", err)
	}
	t.Cleanup(cluster.Close)
	e := &env{t: t, brokers: cluster.ListenAddrs(), topic: brokertest.Name(t, "events")}
	e.dlq = e.topic + ".dlq"
	return e, cluster
}

// adminClient connects the test's admin client on first use (so that a
// test checking for leaked goroutines can start without it).
func (e *env) adminClient() sarama.ClusterAdmin {
	e.t.Helper()
	if e.admin == nil {
		admin, err := sarama.NewClusterAdmin(e.brokers, testConfig())
		if err != nil {
			e.t.Fatalf("connecting the test's admin client: %v", err)
		}
		e.admin = admin
	}
	return e.admin
}

// opts are the options every transport object of this env gets: its topic,
// few partitions, fast retries and the test logger.
func (e *env) opts(more ...Option) []Option {
	return append([]Option{
		WithTopic(e.topic),
		WithPartitions(3),
		WithDeliveryLimit(3),
		WithRetryBackoff(10*time.Millisecond, 40*time.Millisecond),
		WithLogger(testLogger(e.t)),
	}, more...)
}

func (e *env) emitter(more ...Option) *Emitter {
	e.t.Helper()
	em, err := NewEmitter(context.Background(), e.brokers, e.opts(more...)...)
	if err != nil {
		e.t.Fatalf("NewEmitter: %v", err)
	}
	e.t.Cleanup(func() { em.Close() })
	return em
}

func (e *env) groupListener(group string, more ...Option) *Listener {
	e.t.Helper()
	l, err := NewGroupListener(context.Background(), e.brokers, group, contracts.Names(), e.opts(more...)...)
	if err != nil {
		e.t.Fatalf("NewGroupListener: %v", err)
	}
	e.t.Cleanup(func() { l.Close() })
	return l
}

func (e *env) replayListener(more ...Option) *Listener {
	e.t.Helper()
	l, err := NewReplayListener(context.Background(), e.brokers, contracts.Names(), e.opts(more...)...)
	if err != nil {
		e.t.Fatalf("NewReplayListener: %v", err)
	}
	e.t.Cleanup(func() { l.Close() })
	return l
}

// emit emits every event or fails the test.
func (e *env) emit(em *Emitter, evs ...contracts.Event) {
	e.t.Helper()
	for _, ev := range evs {
		if err := em.Emit(context.Background(), ev); err != nil {
			e.t.Fatalf("Emit: %v", err)
		}
	}
}

// emitBookings emits a booking for each ID, spread over keys partition
// keys ("ev-0", "ev-1", ...), with Seats counting up from seq so that
// order can be checked.
func (e *env) emitBookings(em *Emitter, ids []string, keys, seq int) {
	e.t.Helper()
	for i, id := range ids {
		e.emit(em, booked(id, fmt.Sprintf("ev-%d", i%keys), seq+i))
	}
}

// produceRaw writes a record with a producer of the test's own, for
// poison the emitter would refuse to send; see produce.
func (e *env) produceRaw(key string, value []byte, headers ...sarama.RecordHeader) (partition int32, offset int64) {
	e.t.Helper()
	partition, offset, err := produce(e.brokers, e.topic, key, value, headers...)
	if err != nil {
		e.t.Fatalf("producing a %d-byte record: %v", len(value), err)
	}
	return partition, offset
}

// produce writes one record of up to 2 MB with a producer of the test's
// own (sarama refuses more than 1 MB unless told), as another client of
// the cluster could. Its partitioner is the emitter's, so the record lands
// on the same partition as events with the same key.
func produce(brokers []string, topic, key string, value []byte, headers ...sarama.RecordHeader) (partition int32, offset int64, err error) {
	cfg := testConfig()
	cfg.Producer.MaxMessageBytes = 2 << 20
	cfg.Producer.Partitioner = sarama.NewMurmur2Partitioner
	p, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		return 0, 0, fmt.Errorf("test producer: %w", err)
	}
	defer p.Close()
	return p.SendMessage(&sarama.ProducerMessage{
		Topic: topic, Key: sarama.StringEncoder(key), Value: sarama.ByteEncoder(value), Headers: headers,
	})
}

// records reads every record of topic that is there now, from the oldest.
func (e *env) records(topic string) []*sarama.ConsumerMessage {
	e.t.Helper()
	out, err := readTopic(e.brokers, topic)
	if err != nil {
		e.t.Fatalf("reading topic %s: %v", topic, err)
	}
	return out
}

func readTopic(brokers []string, topic string) ([]*sarama.ConsumerMessage, error) {
	client, err := sarama.NewClient(brokers, testConfig())
	if err != nil {
		return nil, err
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return nil, err
	}
	defer consumer.Close()
	partitions, err := client.Partitions(topic)
	if err != nil {
		return nil, err
	}
	var out []*sarama.ConsumerMessage
	for _, p := range partitions {
		oldest, err := client.GetOffset(topic, p, sarama.OffsetOldest)
		if err != nil {
			return nil, err
		}
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return nil, err
		}
		if oldest >= end {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, oldest)
		if err != nil {
			return nil, err
		}
		timeout := time.After(wait)
		for next := oldest; next < end; {
			select {
			case m := <-pc.Messages():
				out = append(out, m)
				next = m.Offset + 1
			case <-timeout:
				pc.Close()
				return nil, fmt.Errorf("partition %d: read up to %d of %d", p, next, end)
			}
		}
		pc.Close()
	}
	return out, nil
}

// committed returns the group's committed offset per partition of the
// env's topic (-1: none).
func (e *env) committed(group string) map[int32]int64 {
	e.t.Helper()
	parts, err := e.partitions()
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := e.adminClient().ListConsumerGroupOffsets(group, map[string][]int32{e.topic: parts})
	if err != nil {
		e.t.Fatalf("listing the offsets of group %s: %v", group, err)
	}
	out := map[int32]int64{}
	for p, block := range resp.Blocks[e.topic] {
		out[p] = block.Offset
	}
	return out
}

// committedAll checks that the group committed the end of every partition
// of the env's topic: everything was processed.
func (e *env) committedAll(group string) error {
	got, ends := e.committed(group), e.ends()
	for p, end := range ends {
		if c := got[p]; c != end && !(end == 0 && c == -1) {
			return fmt.Errorf("partition %d: committed %d, end %d (committed %v, ends %v)", p, c, end, got, ends)
		}
	}
	return nil
}

// ends returns the high-water mark of every partition of the env's topic.
func (e *env) ends() map[int32]int64 {
	e.t.Helper()
	client, err := sarama.NewClient(e.brokers, testConfig())
	if err != nil {
		e.t.Fatal(err)
	}
	defer client.Close()
	parts, err := client.Partitions(e.topic)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[int32]int64{}
	for _, p := range parts {
		if out[p], err = client.GetOffset(e.topic, p, sarama.OffsetNewest); err != nil {
			e.t.Fatal(err)
		}
	}
	return out
}

func (e *env) partitions() ([]int32, error) {
	meta, err := e.adminClient().DescribeTopics([]string{e.topic})
	if err != nil || len(meta) != 1 {
		return nil, fmt.Errorf("describing topic %s: %v", e.topic, err)
	}
	var parts []int32
	for _, p := range meta[0].Partitions {
		parts = append(parts, p.ID)
	}
	return parts, nil
}

// listen runs l.Listen in the background. stop cancels it and checks that
// it returned nil; it also runs at cleanup.
func listen(t *testing.T, l *Listener, h func(context.Context, contracts.Event) error, names ...string) (stop func()) {
	t.Helper()
	return listenBatch(t, l, h, nil, names...)
}

// listenBatch is listen with l.ListenBatch and the batch handler hb.
func listenBatch(t *testing.T, l *Listener, h msgqueue.Handler, hb msgqueue.BatchHandler, names ...string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.ListenBatch(ctx, h, hb, names...) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Listen returned %v, want nil", err)
				}
			case <-time.After(wait):
				t.Errorf("Listen did not return %v after its context was cancelled", wait)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// awaitCaughtUp waits until l's CaughtUp closes, or fails the test with
// what the listener still waits for.
func awaitCaughtUp(t *testing.T, l *Listener) {
	t.Helper()
	select {
	case <-l.CaughtUp():
	case <-time.After(wait):
		t.Fatalf("not caught up after %v: %s", wait, l.caught.describe())
	}
}

// booked is an event of key (the event ID) with its own booking ID; seq
// goes in Seats so that order can be checked.
func booked(id, key string, seq int) *contracts.EventBooked {
	return &contracts.EventBooked{
		ID: id, EventID: key, UserID: "user-1", Seats: seq,
		Date: time.Date(2026, 3, 14, 19, 30, 0, 0, time.UTC),
	}
}

// idOf is the ID a test tracks an event by.
func idOf(ev contracts.Event) string {
	switch e := ev.(type) {
	case *contracts.EventBooked:
		return e.ID
	case *contracts.EventCreated:
		return e.ID
	case *contracts.LocationCreated:
		return e.ID
	}
	return ""
}

// seen records what a handler received, in order.
type seen struct {
	mu   sync.Mutex
	ids  []string
	evs  []contracts.Event
	hits map[string]int
}

func newSeen() *seen { return &seen{hits: map[string]int{}} }

func (s *seen) add(ev contracts.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids = append(s.ids, idOf(ev))
	s.evs = append(s.evs, ev)
	s.hits[idOf(ev)]++
}

// handler accepts everything.
func (s *seen) handler(_ context.Context, ev contracts.Event) error {
	s.add(ev)
	return nil
}

func (s *seen) snapshot() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ids)
}

// distinct returns the set of IDs seen.
func (s *seen) distinct() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]bool{}
	for id := range s.hits {
		out[id] = true
	}
	return out
}

// sameIDs checks, for brokertest.Eventually, that the handler saw every
// ID of want and no other.
func (s *seen) sameIDs(want []string) error {
	return brokertest.MatchIDs(slices.Collect(maps.Keys(s.distinct())), want)
}

// ids returns n IDs such as "prefix-007".
func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}

// header returns the value of a record header.
func header(m *sarama.ConsumerMessage, key string) string {
	for _, h := range m.Headers {
		if string(h.Key) == key {
			return string(h.Value)
		}
	}
	return ""
}

// contains reports whether s contains every part.
func contains(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
