package kafka

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
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
// replay caught up come through sarama's consumer, once each.
func TestReplayReadsTheBacklogInOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	em := e.emitter(WithPartitions(1))
	var want []string
	plain := func(prefix string, n int) {
		for _, id := range ids(prefix, n) {
			e.emit(em, booked(id, "show-1", 1))
			want = append(want, id)
		}
	}
	send := func(p sarama.SyncProducer, id string) {
		t.Helper()
		v, err := contracts.Wrap(booked(id, "show-1", 1))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: e.topic, Key: sarama.StringEncoder("show-1"), Value: sarama.ByteEncoder(v)}); err != nil {
			t.Fatalf("producing %s in a transaction: %v", id, err)
		}
	}
	begin := func(p sarama.SyncProducer) {
		t.Helper()
		if err := p.BeginTxn(); err != nil {
			t.Fatalf("BeginTxn: %v", err)
		}
	}

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

	l := e.replayListener(WithPartitions(1), smallFetches)
	s := newSeen()
	listen(t, l, s.handler)
	awaitCaughtUp(t, l)
	if got := s.snapshot(); !slices.Equal(got, want) {
		t.Fatalf("at CaughtUp the replay had applied\n%v\nwant, in this order,\n%v", got, want)
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
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	e := &env{t: t, brokers: cluster.ListenAddrs(), topic: brokertest.Name(t, "events")}
	e.dlq = e.topic + ".dlq"
	em := e.emitter(WithPartitions(1))
	want := ids("rec", 60)
	for _, id := range want {
		e.emit(em, booked(id, "show-1", 1))
	}

	// The replay's own fetches are version 4; sarama's consumer asks with
	// a later one. Fail the first of them past offset 20.
	var failed atomic.Bool
	cluster.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		fr := req.(*kmsg.FetchRequest)
		if fr.Version != 4 || len(fr.Topics) != 1 || fr.Topics[0].Topic != e.topic ||
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
