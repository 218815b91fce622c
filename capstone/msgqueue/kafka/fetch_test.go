package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kmsg"

	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// smallFetches makes a replay read its backlog in many fetches of about
// one record each, so that batches, transactions and markers fall on
// every side of a fetch's end.
var smallFetches = WithSaramaConfig(func(c *sarama.Config) { c.Consumer.Fetch.Default = 512 })

// TestReplayReadsTheBacklogInOrder: what a replay reads with fetches of its
// own (fetch.go) is what sarama's read-committed consumer hands over, in
// the log's order, once each: two transactions open at once on the
// partition, one aborted and one committed, records of neither between
// them, and a log that ends in an abort marker. Records written after the
// replay caught up come through sarama's consumer, once each, and it
// never asked for an offset below the target: the own fetches read all of
// the backlog. The test runs a Kafka of its own, whose fetches it watches.
func TestReplayReadsTheBacklogInOrder(t *testing.T) {
	t.Parallel()
	e, cluster := newEnvOwnKafka(t, 1)
	em := e.emitter(WithPartitions(1))
	var want []string
	plain := func(prefix string, n int) {
		for _, id := range ids(prefix, n) {
			e.emit(em, booked(id, "show-1", 1))
			want = append(want, id)
		}
	}
	send := func(p sarama.SyncProducer, id string) { t.Helper(); e.sendTxn(p, booked(id, "show-1", 1)) }
	begin := e.begin

	plain("first", 20)
	aborting, committing := e.txnProducer(), e.txnProducer()
	begin(aborting)
	begin(committing)
	for i := range 5 {
		send(aborting, fmt.Sprintf("aborted-%d", i))
		send(committing, fmt.Sprintf("committed-%d", i))
		want = append(want, fmt.Sprintf("committed-%d", i))
		plain(fmt.Sprintf("between-%d", i), 2)
	}
	if err := committing.CommitTxn(); err != nil {
		t.Fatalf("CommitTxn: %v", err)
	}
	if err := aborting.AbortTxn(); err != nil {
		t.Fatalf("AbortTxn: %v", err)
	}
	plain("then", 20)
	e.inTxn(aborting, false, booked("aborted-last", "show-1", 1))

	target := e.ends()[0]
	own := newFetchRequest(ProtocolVersion).Version
	var early atomic.Int64 // the lowest offset sarama's consumer asked for below target, plus one
	cluster.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		fr := req.(*kmsg.FetchRequest)
		for _, ft := range fr.Topics {
			for _, fp := range ft.Partitions {
				if fr.Version != own && ft.Topic == e.topic && fp.FetchOffset < target {
					early.CompareAndSwap(0, fp.FetchOffset+1)
				}
			}
		}
		return nil, nil, false
	})

	l := e.replayListener(WithPartitions(1), smallFetches)
	s := newSeen()
	listen(t, l, s.handler)
	awaitCaughtUp(t, l)
	if got := s.snapshot(); !slices.Equal(got, want) {
		t.Fatalf("at CaughtUp the replay had applied\n%v\nwant, in this order,\n%v", got, want)
	}
	if off := early.Load(); off != 0 {
		t.Errorf("sarama's consumer was asked for offset %d, below the target %d: the own fetches stopped early", off-1, target)
	}

	plain("after", 5)
	brokertest.Eventually(t, wait, func() error {
		if got := s.snapshot(); !slices.Equal(got, want) {
			return fmt.Errorf("applied %v, want %v", got, want)
		}
		return nil
	})
}

// TestReplayGoesOnWhenItsOwnFetchFails: when the broker answers one of the
// replay's own fetches with an error (here "not the leader", as during a
// leader's move), sarama's consumer reads the rest of the backlog from
// there: nothing is lost, nothing applied twice. The test runs a Kafka of
// its own, whose fetches it answers.
func TestReplayGoesOnWhenItsOwnFetchFails(t *testing.T) {
	t.Parallel()
	e, cluster := newEnvOwnKafka(t, 1)
	em := e.emitter(WithPartitions(1))
	want := ids("rec", 60)
	for _, id := range want {
		e.emit(em, booked(id, "show-1", 1))
	}

	// The replay's own fetches are of their own version; sarama's
	// consumer asks with a later one. Fail the first of them past offset
	// 20.
	own := newFetchRequest(ProtocolVersion).Version
	var failed atomic.Bool
	cluster.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		fr := req.(*kmsg.FetchRequest)
		if fr.Version != own || len(fr.Topics) != 1 || fr.Topics[0].Topic != e.topic ||
			len(fr.Topics[0].Partitions) != 1 || fr.Topics[0].Partitions[0].FetchOffset < 20 {
			return nil, nil, false
		}
		cluster.DropControl()
		failed.Store(true)
		resp := fr.ResponseKind().(*kmsg.FetchResponse)
		rt := kmsg.NewFetchResponseTopic()
		rt.Topic = e.topic
		rp := kmsg.NewFetchResponseTopicPartition()
		rp.ErrorCode = 6 // NOT_LEADER_OR_FOLLOWER
		rp.RecordBatches = []byte{}
		rt.Partitions = append(rt.Partitions, rp)
		resp.Topics = append(resp.Topics, rt)
		return resp, nil, true
	})

	l := e.replayListener(WithPartitions(1), smallFetches)
	s := newSeen()
	listen(t, l, s.handler)
	awaitCaughtUp(t, l)
	if !failed.Load() {
		t.Fatal("no fetch of the replay's own was answered with an error: the test tested nothing")
	}
	if got := s.snapshot(); !slices.Equal(got, want) {
		t.Fatalf("at CaughtUp the replay had applied\n%v\nwant, in this order,\n%v", got, want)
	}
}

// listenWatched runs l.Listen until the test ends, and returns a check
// that fails the test at once if Listen returned before that.
func listenWatched(t *testing.T, l *Listener, h func(context.Context, contracts.Event) error) (alive func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Listen(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(wait):
		}
	})
	return func() {
		t.Helper()
		select {
		case err := <-done:
			done <- err
			t.Fatalf("Listen returned %v while it should still run", err)
		default:
		}
	}
}

// TestReplayGoesOnWhenRecordsAreDeletedAtTheHandover: records deleted
// after the replay's own fetches reached the target, while the handler
// still applies the backlog, are gone when sarama's consumer is to start
// at the target; ConsumePartition refuses that offset at once. The replay
// goes on from the oldest record still stored (it stopped, and with it
// the service, when the own fetches came in).
func TestReplayGoesOnWhenRecordsAreDeletedAtTheHandover(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	em := e.emitter(WithPartitions(1))
	backlog := ids("old", 10)
	for _, id := range backlog {
		e.emit(em, booked(id, "show-1", 1))
	}
	l := e.replayListener(WithPartitions(1))
	s := newSeen()
	gate := make(chan struct{})
	var calls atomic.Int64
	alive := listenWatched(t, l, func(ctx context.Context, ev contracts.Event) error {
		if calls.Add(1) == 5 {
			<-gate
		}
		return s.handler(ctx, ev)
	})
	brokertest.Eventually(t, wait, func() error {
		if calls.Load() < 5 {
			return fmt.Errorf("%d handed over", calls.Load())
		}
		return nil
	})
	after := ids("new", 5) // offsets 10..14, above the target 10
	for _, id := range after {
		e.emit(em, booked(id, "show-1", 1))
	}
	if err := e.adminClient().DeleteRecords(e.topic, map[int32]int64{0: 12}); err != nil {
		t.Fatal(err)
	}
	close(gate)
	awaitCaughtUp(t, l)
	brokertest.Eventually(t, wait, func() error {
		alive()
		got := s.distinct()
		for _, id := range after[2:] { // the ones still stored
			if !got[id] {
				return fmt.Errorf("%s not applied (applied %v)", id, s.snapshot())
			}
		}
		return nil
	})
}

// TestReplayOutlastsABrokerOutageInItsBacklog: a broker away for 3 s
// while the replay reads its backlog (a restart) ends its own fetches,
// and sarama's consumer cannot start until it is back; the replay tries
// again until it can, and applies every record once, in order (it
// stopped, and with it the service, when the own fetches came in). The
// test runs a Kafka of its own, whose requests it fails.
func TestReplayOutlastsABrokerOutageInItsBacklog(t *testing.T) {
	t.Parallel()
	e, cluster := newEnvOwnKafka(t, 1)
	em := e.emitter(WithPartitions(1))
	want := ids("rec", 300)
	for _, id := range want {
		e.emit(em, booked(id, "show-1", 1))
	}

	var down atomic.Int64 // unix nanos until which the broker is away
	cluster.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if time.Now().UnixNano() < down.Load() {
			return nil, errors.New("the broker is away"), true
		}
		return nil, nil, false
	})

	l := e.replayListener(WithPartitions(1), WithSaramaConfig(func(c *sarama.Config) { c.Consumer.Fetch.Default = 512 }))
	s := newSeen()
	var calls atomic.Int64
	alive := listenWatched(t, l, func(ctx context.Context, ev contracts.Event) error {
		if calls.Add(1) == 20 {
			down.Store(time.Now().Add(3 * time.Second).UnixNano())
		}
		return s.handler(ctx, ev)
	})
	brokertest.Eventually(t, 40*time.Second, func() error {
		alive()
		select {
		case <-l.CaughtUp():
			return nil
		default:
			return fmt.Errorf("not caught up: %s", l.caught.describe())
		}
	})
	if got := s.snapshot(); !slices.Equal(got, want) {
		t.Fatalf("applied %d records, want the %d in order", len(got), len(want))
	}
}

// TestReplayHandsRecordsPastTheTargetOverOnce: an answer of the replay's
// own fetches may hold records written after the replay started, at or
// past the target; they are sarama's consumer's to hand over, so each is
// applied once, in order.
func TestReplayHandsRecordsPastTheTargetOverOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	em := e.emitter(WithPartitions(1))
	want := ids("old", 100)
	for _, id := range want {
		e.emit(em, booked(id, "show-1", 1))
	}
	mid := WithSaramaConfig(func(c *sarama.Config) { c.Consumer.Fetch.Default = 2048 })
	l := e.replayListener(WithPartitions(1), mid)
	s := newSeen()
	gate := make(chan struct{})
	var calls atomic.Int64
	listen(t, l, func(ctx context.Context, ev contracts.Event) error {
		if calls.Add(1) == 1 {
			<-gate
		}
		return s.handler(ctx, ev)
	})
	brokertest.Eventually(t, wait, func() error {
		if calls.Load() < 1 {
			return errors.New("nothing handed over")
		}
		return nil
	})
	after := ids("new", 20)
	for _, id := range after {
		e.emit(em, booked(id, "show-1", 1))
	}
	want = append(want, after...)
	close(gate)
	awaitCaughtUp(t, l)
	brokertest.Eventually(t, wait, func() error {
		if got := s.snapshot(); !slices.Equal(got, want) {
			return fmt.Errorf("applied %d: %v", len(got), got)
		}
		return nil
	})
}

// TestReplayStartsInsideABatch: a replay whose first record is inside a
// batch (the records before it deleted) hands over the records from the
// oldest one still stored, as sarama's consumer does, not the batch's
// deleted head.
func TestReplayStartsInsideABatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.emitter(WithPartitions(1)) // creates the topic
	cfg := testConfig()
	cfg.Producer.Flush.Messages = 10
	cfg.Producer.Flush.Frequency = time.Second
	p, err := sarama.NewSyncProducer(e.brokers, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	all := ids("b", 10)
	var msgs []*sarama.ProducerMessage
	for _, id := range all {
		v, err := contracts.Wrap(booked(id, "show-1", 1))
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, &sarama.ProducerMessage{Topic: e.topic, Partition: 0, Key: sarama.StringEncoder("show-1"), Value: sarama.ByteEncoder(v)})
	}
	if err := p.SendMessages(msgs); err != nil {
		t.Fatal(err)
	}
	if err := e.adminClient().DeleteRecords(e.topic, map[int32]int64{0: 4}); err != nil {
		t.Fatal(err)
	}
	l := e.replayListener(WithPartitions(1))
	s := newSeen()
	listen(t, l, s.handler)
	awaitCaughtUp(t, l)
	if got := s.snapshot(); !slices.Equal(got, all[4:]) {
		t.Fatalf("replayed %v, want %v", got, all[4:])
	}
}

// TestReplayLeavesOutAbortedRecordsWhoseMarkerIsPastTheTarget: a
// transaction aborted while another one is open has its records below
// the target (the open one's first offset) and its abort marker past it.
// The replay's own fetches leave its records out all the same; the open
// one's come once it commits.
func TestReplayLeavesOutAbortedRecordsWhoseMarkerIsPastTheTarget(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	em := e.emitter(WithPartitions(1))
	e.emit(em, booked("before", "show-1", 1))
	a, b := e.txnProducer(), e.txnProducer()
	send := func(p sarama.SyncProducer, id string) { t.Helper(); e.sendTxn(p, booked(id, "show-1", 1)) }
	e.begin(a)
	send(a, "aborted-1")
	send(a, "aborted-2")
	e.begin(b)
	send(b, "open-1")
	if err := a.AbortTxn(); err != nil {
		t.Fatal(err)
	}
	e.emit(em, booked("plain", "show-1", 1)) // above the target
	l := e.replayListener(WithPartitions(1))
	s := newSeen()
	listen(t, l, s.handler)
	awaitCaughtUp(t, l)
	if got := s.snapshot(); !slices.Equal(got, []string{"before"}) {
		t.Fatalf("at CaughtUp: %v, want [before]", got)
	}
	if err := b.CommitTxn(); err != nil {
		t.Fatal(err)
	}
	want := []string{"before", "open-1", "plain"}
	brokertest.Eventually(t, wait, func() error {
		if got := s.snapshot(); !slices.Equal(got, want) {
			return fmt.Errorf("applied %v, want %v", got, want)
		}
		return nil
	})
}
