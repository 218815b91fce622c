package kafka

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// txnProducer is a transactional sarama producer on the env's topic, as
// another service (or a Java or Python client) writing to it in
// transactions would be.
func (e *env) txnProducer() sarama.SyncProducer {
	e.t.Helper()
	cfg := testConfig()
	SetProducerGuarantees(cfg)
	cfg.Producer.Transaction.ID = brokertest.Name(e.t, "txn")
	p, err := sarama.NewSyncProducer(e.brokers, cfg)
	if err != nil {
		e.t.Fatalf("starting a transactional producer: %v", err)
	}
	e.t.Cleanup(func() { p.Close() })
	return p
}

// begin begins a transaction of p.
func (e *env) begin(p sarama.SyncProducer) {
	e.t.Helper()
	if err := p.BeginTxn(); err != nil {
		e.t.Fatalf("BeginTxn: %v", err)
	}
}

// sendTxn writes ev with p, in the transaction p has begun, keyed by its
// partition key, and returns where it landed.
func (e *env) sendTxn(p sarama.SyncProducer, ev contracts.Event) (partition int32, offset int64) {
	e.t.Helper()
	v, err := contracts.Wrap(ev)
	if err != nil {
		e.t.Fatal(err)
	}
	partition, offset, err = p.SendMessage(&sarama.ProducerMessage{Topic: e.topic, Key: sarama.StringEncoder(ev.PartitionKey()), Value: sarama.ByteEncoder(v)})
	if err != nil {
		e.t.Fatalf("producing %s in a transaction: %v", idOf(ev), err)
	}
	return partition, offset
}

// awaitHealthSays waits until l's Health reports an error containing want.
func awaitHealthSays(t *testing.T, l *Listener, want string) {
	t.Helper()
	brokertest.Eventually(t, wait, func() error {
		if err := l.Health(t.Context()); err == nil || !strings.Contains(err.Error(), want) {
			return fmt.Errorf("Health = %v, want an error containing %q", err, want)
		}
		return nil
	})
}

// inTxn writes evs in one transaction, committed or aborted.
func (e *env) inTxn(p sarama.SyncProducer, commit bool, evs ...contracts.Event) {
	e.t.Helper()
	e.begin(p)
	for _, ev := range evs {
		e.sendTxn(p, ev)
	}
	end := p.CommitTxn
	if !commit {
		end = p.AbortTxn
	}
	if err := end(); err != nil {
		e.t.Fatalf("ending the transaction (commit %v): %v", commit, err)
	}
}

// TestReplayOfTransactions: records of an aborted transaction never
// happened, a log that ends in a transaction's marker (which takes an
// offset but is no record) is still read to its end, and an open
// transaction does not hold the replay back; its records come once it
// commits.
func TestReplayOfTransactions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		commits []bool // the transactions, in order: committed or aborted
		want    []string
	}{
		{"ends in a commit", []bool{false, true}, []string{"txn-2"}},
		{"ends in an abort", []bool{true, false}, []string{"txn-1"}},
		{"only aborted", []bool{false, false}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.emitter() // creates the topic
			p := e.txnProducer()
			for i, commit := range tc.commits {
				e.inTxn(p, commit, booked(fmt.Sprintf("txn-%d", i+1), "show-1", i+1))
			}
			l := e.replayListener()
			s := newSeen()
			listen(t, l, s.handler)
			awaitCaughtUp(t, l)
			if err := s.sameIDs(tc.want); err != nil {
				t.Errorf("the replay applied %v: %v", s.snapshot(), err)
			}
		})
	}

	t.Run("open transaction", func(t *testing.T) {
		e := newEnv(t)
		em := e.emitter()
		e.emit(em, booked("before", "show-1", 1))
		p := e.txnProducer()
		e.begin(p)
		e.sendTxn(p, booked("open", "show-1", 2))
		l := e.replayListener()
		s := newSeen()
		listen(t, l, s.handler)
		awaitCaughtUp(t, l) // the open transaction is not waited for
		if err := s.sameIDs([]string{"before"}); err != nil {
			t.Errorf("caught up having applied %v: %v", s.snapshot(), err)
		}
		if err := p.CommitTxn(); err != nil {
			t.Fatal(err)
		}
		brokertest.Eventually(t, wait, func() error { return s.sameIDs([]string{"before", "open"}) })
	})
}

// TestGroupOfTransactions: a group listener never hands over a record of
// an aborted transaction, catches up with a log that ends in a marker,
// and commits past the marker.
func TestGroupOfTransactions(t *testing.T) {
	e := newEnv(t)
	e.emitter() // creates the topic
	p := e.txnProducer()
	e.inTxn(p, false, booked("aborted-1", "show-1", 1))
	e.inTxn(p, true, booked("committed-1", "show-1", 2))

	group := brokertest.Name(t, "group")
	l := e.groupListener(group)
	s := newSeen()
	stop := listen(t, l, s.handler)
	awaitCaughtUp(t, l)
	if err := s.sameIDs([]string{"committed-1"}); err != nil {
		t.Errorf("the group handled %v: %v", s.snapshot(), err)
	}
	stop() // commits what was marked
	if err := e.committedAll(group); err != nil {
		t.Error(err)
	}
}

// TestHealthSaysAnOpenTransactionHoldsAPartitionBack: another producer
// begins a transaction, writes a record and neither commits nor aborts.
// The listener cannot hand over anything after it (read-committed) until
// the transaction ends; once it has seen the partition held at that
// offset past the limit (here 300 ms, looking every 50 ms), Health says
// so, naming the partition and the offset, and once the transaction
// commits it is nil again. A replay and a group member (which looks at
// the partitions of its session) alike.
func TestHealthSaysAnOpenTransactionHoldsAPartitionBack(t *testing.T) {
	for _, mode := range []string{"replay", "group"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			em := e.emitter()
			e.emit(em, booked("before", "show-1", 1))
			l := e.replayListener()
			if mode == "group" {
				l = e.groupListener(brokertest.Name(t, "group"))
			}
			l.held.limit, l.held.every = 300*time.Millisecond, 50*time.Millisecond
			s := newSeen()
			listen(t, l, s.handler)
			awaitCaughtUp(t, l)
			if err := l.Health(t.Context()); err != nil {
				t.Fatalf("Health before any transaction = %v, want nil", err)
			}

			p := e.txnProducer()
			e.begin(p)
			part, offset := e.sendTxn(p, booked("open", "show-1", 2))
			awaitHealthSays(t, l, fmt.Sprintf("partition %d of topic %s is held at offset %d by a transaction this listener has seen open", part, e.topic, offset))
			if err := p.CommitTxn(); err != nil {
				t.Fatal(err)
			}
			brokertest.Eventually(t, wait, func() error { return l.Health(t.Context()) })
			brokertest.Eventually(t, wait, func() error { return s.sameIDs([]string{"before", "open"}) })
		})
	}
}

// TestHealthSeesAHeldPartitionAfterItsLeaderMoves: the look at held
// partitions asks each partition's leader through the dead-letter client,
// whose metadata sarama refreshes every 10 minutes by default; after a
// leader moved, the old leader answers "not the leader", and an open
// transaction on the partition went unreported for up to 10 minutes. The
// test runs a Kafka of its own, of two brokers, to move the leader.
func TestHealthSeesAHeldPartitionAfterItsLeaderMoves(t *testing.T) {
	t.Parallel()
	e, cluster := newEnvOwnKafka(t, 2)
	em := e.emitter(WithPartitions(1))
	e.emit(em, booked("before", "show-1", 1))
	l := e.replayListener(WithPartitions(1))
	l.held.limit, l.held.every = 300*time.Millisecond, 50*time.Millisecond
	s := newSeen()
	listen(t, l, s.handler)
	awaitCaughtUp(t, l)
	// Let the watcher look (and its client learn the leader) before the move.
	brokertest.Eventually(t, wait, func() error {
		if _, err := l.dlqClient.Leader(e.topic, 0); err != nil {
			return err
		}
		return nil
	})

	from := cluster.LeaderFor(e.topic, 0)
	to := int32(0)
	if from == 0 {
		to = 1
	}
	if err := cluster.MoveTopicPartition(e.topic, 0, to); err != nil {
		t.Fatalf("moving the leader of partition 0 from node %d to %d: %v", from, to, err)
	}

	p := e.txnProducer()
	e.begin(p)
	_, offset := e.sendTxn(p, booked("open", "show-1", 2))
	awaitHealthSays(t, l, fmt.Sprintf("partition 0 of topic %s is held at offset %d", e.topic, offset))
	if err := p.CommitTxn(); err != nil {
		t.Fatal(err)
	}
	brokertest.Eventually(t, wait, func() error { return l.Health(t.Context()) })
	brokertest.Eventually(t, wait, func() error { return s.sameIDs([]string{"before", "open"}) })
}
