// Command 11-consumer-groups shows how a Kafka consumer group shares a topic's
// partitions among its members: each partition has exactly one owner per
// group, a member beyond the partition count sits idle, a second group gets
// its own copy of every message, and the partitions of a member that leaves
// move to the members that stay.
//
// The run has five steps:
//
//   - group <group>.billing: two members split the four partitions;
//   - twelve messages are produced and processed once by the group;
//   - group <group>.audit: five members on four partitions, one owns nothing,
//     and the group still receives all twelve messages;
//   - member-2 of the billing group leaves; its partitions move to member-1,
//     which resumes at the offsets member-2 committed;
//   - eight more messages reach both groups, and nothing was processed twice.
//
// Usage:
//
//	go run ./labs/11-consumer-groups [-brokers 127.0.0.1:9092] [-topic lab11.orders] [-group lab11] [-keep]
//
// The topic and both groups are deleted at the end unless -keep is given,
// also when Ctrl-C stops the run. The capstone's topic, events, is refused.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"example.com/myevents/labs/labkit"
	"github.com/IBM/sarama"
)

const (
	defaultBrokers = "127.0.0.1:9092" // the local development Kafka
	partitions     = 4                // partitions of the lab's topic
	firstBatch     = 12               // messages produced before member-2 leaves
	secondBatch    = 8                // messages produced after it left
	waitTimeout    = 30 * time.Second // longest wait for a rebalance or for processing
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	interrupted := ctx.Err() != nil // read it before stop, which cancels ctx as well
	stop()
	switch {
	case err != nil && (interrupted || errors.Is(err, context.Canceled)):
		// Ctrl-C: run has closed what it opened. 130 is what a shell
		// reports for a program ended by Ctrl-C (128 + SIGINT).
		fmt.Fprintln(os.Stderr, "interrupted: stopped cleanly")
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// observations is what the run saw, for the lab's test: the assignments each
// member received in its Setup and the message IDs each member processed.
type observations struct {
	produced   []string                       // message IDs, in produce order
	billing    map[string][]int32             // member -> partitions, both billing members
	audit      map[string][]int32             // member -> partitions, five audit members
	afterLeave map[string][]int32             // member -> partitions, billing after member-2 left
	processed  map[string]map[string][]string // group -> member -> IDs in processing order
}

// run is the program; runLab also returns what it observed.
func run(ctx context.Context, args []string, out io.Writer) error {
	_, err := runLab(ctx, args, out)
	return err
}

func runLab(ctx context.Context, args []string, out io.Writer) (*observations, error) {
	fs := flag.NewFlagSet("11-consumer-groups", flag.ContinueOnError)
	brokerList := fs.String("brokers", "", "Kafka bootstrap brokers, comma-separated (default $KAFKA_BROKERS, else "+defaultBrokers+")")
	topic := fs.String("topic", "lab11.orders", "name of the topic the lab creates with 4 partitions and deletes at the end")
	groupPrefix := fs.String("group", "lab11", "prefix of the two consumer groups, <group>.billing and <group>.audit, deleted at the end")
	keep := fs.Bool("keep", false, "keep the topic and the groups' committed offsets at the end instead of deleting them, to look at them")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q; see -h", fs.Args())
	}
	// Refuse the capstone's topic and bad names before connecting: the
	// lab deletes and recreates its topic, and the broker would refuse a
	// bad topic name only once the run is under way.
	if err := labkit.CheckTopic(*topic, "lab11.orders", true); err != nil {
		return nil, err
	}
	if *groupPrefix == "" {
		return nil, errors.New("-group is empty: give the prefix of the lab's two groups a name, such as lab11")
	}
	// The environment supplies the brokers unless -brokers does.
	if *brokerList == "" {
		*brokerList = labkit.EnvOr("KAFKA_BROKERS", defaultBrokers)
	}
	brokers := labkit.SplitBrokers(*brokerList)
	if len(brokers) == 0 {
		return nil, errors.New("no Kafka broker given: pass -brokers host:port or set KAFKA_BROKERS")
	}
	billing, audit := *groupPrefix+".billing", *groupPrefix+".audit"
	obs := &observations{processed: map[string]map[string][]string{}}

	// Connect. One client serves the admin calls and the producer; every
	// group member below opens its own, as separate processes would.
	client, err := labkit.ConnectKafka(ctx, brokers, newConfig("myevents-11-consumer-groups"))
	if err != nil {
		return nil, err
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("opening the Kafka admin client: %w", err)
	}
	defer admin.Close() // closes client too
	fmt.Fprintf(out, "brokers: %s\n", strings.Join(brokers, ","))

	// Declare: start from a clean slate, so a second run prints the same
	// lines. Delete the groups too: offsets committed by a crashed earlier
	// run would make the new members start part-way through.
	for _, g := range []string{billing, audit} {
		if err := deleteGroup(ctx, admin, g); err != nil {
			return nil, err
		}
	}
	if err := recreateTopic(ctx, admin, *topic); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "topic %s: %d partitions\n", *topic, partitions)

	b := newBoard()
	// caughtUp waits until the group processed every message produced so
	// far (what its members report) and committed them (what the broker
	// says: each partition's committed offset equals its end offset).
	caughtUp := func(group string) error {
		if err := b.waitProcessed(ctx, group, obs.produced); err != nil {
			return err
		}
		return waitCommitted(ctx, admin, client, *topic, group)
	}
	// Whatever happens below (Ctrl-C included), every member leaves its
	// group, and unless -keep the groups and the topic go. Members leave
	// first: a group that still has members cannot be deleted.
	var members []*member
	finished := false
	defer func() {
		closeMembers(members)
		if finished || *keep {
			return
		}
		// ctx may be cancelled by now: clean up on a context of our own.
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), waitTimeout)
		defer cancel()
		if err := deleteGroupsAndTopic(cleanup, admin, *topic, billing, audit); err != nil {
			slog.Warn("cleaning up after an interrupted run", "err", err)
		}
	}()
	join := func(group, name string) (*member, error) {
		m, err := startMember(ctx, brokers, *topic, group, name, b)
		if err != nil {
			return nil, err
		}
		members = append(members, m)
		return m, nil
	}

	// Consume, group billing: two members. Kafka gives each partition to
	// exactly one member of the group.
	billingMembers := []string{"member-1", "member-2"}
	var billingGroup []*member
	for _, name := range billingMembers {
		m, err := join(billing, name)
		if err != nil {
			return nil, err
		}
		billingGroup = append(billingGroup, m)
	}
	obs.billing, err = b.waitStable(ctx, billing, billingMembers, -1)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "group %s, %d members:\n", billing, len(billingMembers))
	printAssignment(out, billingMembers, obs.billing)

	// Publish the first batch. The key picks the partition.
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		return nil, fmt.Errorf("creating the Kafka producer: %w", err)
	}
	defer producer.Close()
	ids, err := produce(producer, *topic, 1, firstBatch)
	if err != nil {
		return nil, err
	}
	obs.produced = append(obs.produced, ids...)
	fmt.Fprintf(out, "produced %d messages %s..%s (key = message ID)\n", len(ids), ids[0], ids[len(ids)-1])

	// Observe: the group processes each message once, split by partition.
	if err := caughtUp(billing); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "group %s processed and committed %d of %d: %s\n", billing,
		b.distinct(billing, obs.produced), len(obs.produced), b.perMember(billing, billingMembers))

	// Consume, group audit: five members on four partitions. One member has
	// nothing to do: within a group, a partition is never shared.
	auditMembers := []string{"member-1", "member-2", "member-3", "member-4", "member-5"}
	for _, name := range auditMembers {
		if _, err := join(audit, name); err != nil {
			return nil, err
		}
	}
	obs.audit, err = b.waitStable(ctx, audit, auditMembers, -1)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "group %s, %d members on %d partitions:\n", audit, len(auditMembers), partitions)
	printAssignment(out, auditMembers, obs.audit)

	// Observe: a new group starts at the oldest offset (Offsets.Initial), so
	// it reads the messages produced before it existed. Each group has its
	// own offsets: pub/sub across groups, load balancing within one.
	if err := caughtUp(audit); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "group %s processed and committed %d of %d (its own copy of every message)\n", audit,
		b.distinct(audit, obs.produced), len(obs.produced))

	// Leave: member-2 closes cleanly. Close ends its session, which commits
	// what it marked, and sends LeaveGroup; the coordinator rebalances at
	// once instead of waiting for the session timeout.
	before := b.generation(billing, "member-1")
	leaving := billingGroup[1]
	fmt.Fprintf(out, "%s leaves group %s (Close):\n", leaving.name, billing)
	leaving.close()
	b.forget(billing, leaving.name)
	obs.afterLeave, err = b.waitStable(ctx, billing, billingMembers[:1], before)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "  before: member-1 %v, member-2 %v\n", obs.billing["member-1"], obs.billing["member-2"])
	fmt.Fprintf(out, "  after:  member-1 %v\n", obs.afterLeave["member-1"])

	// Publish the second batch. member-1 now reads member-2's partitions,
	// starting at the offsets member-2 committed.
	ids, err = produce(producer, *topic, firstBatch+1, secondBatch)
	if err != nil {
		return nil, err
	}
	obs.produced = append(obs.produced, ids...)
	fmt.Fprintf(out, "produced %d more messages %s..%s\n", len(ids), ids[0], ids[len(ids)-1])
	for _, g := range []string{billing, audit} {
		if err := caughtUp(g); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(out, "group %s processed and committed %d of %d: %s\n", billing,
		b.distinct(billing, obs.produced), len(obs.produced), b.perMember(billing, billingMembers))
	fmt.Fprintf(out, "group %s processed and committed %d of %d\n", audit,
		b.distinct(audit, obs.produced), len(obs.produced))
	fmt.Fprintf(out, "processed twice: %d in %s, %d in %s\n", b.duplicates(billing), billing, b.duplicates(audit), audit)

	// Clean up: every member leaves, then the groups and the topic go.
	closeMembers(members)
	members = nil
	obs.processed = b.processedByMember()
	finished = true
	if *keep {
		fmt.Fprintf(out, "kept topic %s and groups %s, %s (-keep)\n", *topic, billing, audit)
		return obs, nil
	}
	if err := deleteGroupsAndTopic(ctx, admin, *topic, billing, audit); err != nil {
		return obs, err
	}
	fmt.Fprintf(out, "deleted topic %s and groups %s, %s\n", *topic, billing, audit)
	return obs, nil
}

// deleteGroupsAndTopic removes the groups, with their committed offsets,
// and then the topic.
func deleteGroupsAndTopic(ctx context.Context, admin sarama.ClusterAdmin, topic string, groups ...string) error {
	for _, g := range groups {
		if err := deleteGroup(ctx, admin, g); err != nil {
			return err
		}
	}
	if err := admin.DeleteTopic(topic); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return fmt.Errorf("deleting topic %s: %w", topic, err)
	}
	return nil
}

// newConfig is the client configuration of every connection in this lab.
func newConfig(clientID string) *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0 // say which protocol to speak; Kafka 4.x refuses the old default
	cfg.ClientID = clientID
	cfg.Net.DialTimeout = 3 * time.Second
	cfg.Metadata.Retry.Max = 1 // give up soon when no broker answers

	// Producer: wait for the broker to store each message.
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true

	// Consumer group. A group that has no committed offset starts at the
	// oldest message; the default (newest) would skip what was produced
	// before the group existed.
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	// Commit what ConsumeClaim marked every 100 ms (default 1 s), and at
	// the end of every session. A synchronous Commit after each message
	// would be slow: it queues behind the fetch that is long-polling on the
	// same connection (Consumer.MaxWaitTime, 500 ms by default).
	cfg.Consumer.Offsets.AutoCommit.Enable = true
	cfg.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond
	cfg.Consumer.Return.Errors = true
	// The range assignor gives each member a block of partitions, members
	// sorted by member ID. The broker builds a member ID from the client ID,
	// so naming the members member-1, member-2... makes the split predictable.
	cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRange()}
	// Small timeouts so the lab finishes in seconds. Session: how long the
	// coordinator waits for a silent member before evicting it (6 s is the
	// broker's minimum by default). Heartbeat: how soon a member hears that
	// a rebalance started. Rebalance: how long members have to rejoin.
	cfg.Consumer.Group.Session.Timeout = 6 * time.Second
	cfg.Consumer.Group.Heartbeat.Interval = 100 * time.Millisecond
	cfg.Consumer.Group.Rebalance.Timeout = 10 * time.Second
	cfg.Consumer.Group.Rebalance.Retry.Backoff = 100 * time.Millisecond
	return cfg
}

// recreateTopic deletes the topic if a previous run left it, then creates
// it with the lab's partition count.
func recreateTopic(ctx context.Context, admin sarama.ClusterAdmin, topic string) error {
	if err := admin.DeleteTopic(topic); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return fmt.Errorf("deleting topic %s left by a previous run: %w", topic, err)
	}
	detail := &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}
	// Apache Kafka deletes a topic in the background; until it is gone,
	// creating it again answers "already exists". Poll until it succeeds.
	return poll(ctx, "creating topic "+topic, func() (bool, error) {
		err := admin.CreateTopic(topic, detail, false)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, sarama.ErrTopicAlreadyExists):
			return false, nil
		}
		return false, fmt.Errorf("creating topic %s: %w", topic, err)
	})
}

// deleteGroup removes a group and its committed offsets. A group that does
// not exist is fine; one that still has members is waited for, since
// members that just left may still be on their way out.
func deleteGroup(ctx context.Context, admin sarama.ClusterAdmin, group string) error {
	return poll(ctx, "deleting group "+group, func() (bool, error) {
		err := admin.DeleteConsumerGroup(group)
		switch {
		case err == nil, errors.Is(err, sarama.ErrGroupIDNotFound):
			return true, nil
		case errors.Is(err, sarama.ErrNonEmptyGroup), errors.Is(err, sarama.ErrRebalanceInProgress):
			return false, nil
		}
		return false, fmt.Errorf("deleting group %s: %w", group, err)
	})
}

// waitCommitted polls the group's committed offsets until every partition's
// equals the partition's end offset.
func waitCommitted(ctx context.Context, admin sarama.ClusterAdmin, client sarama.Client, topic, group string) error {
	all := make([]int32, partitions)
	for p := range all {
		all[p] = int32(p)
	}
	return poll(ctx, "waiting for group "+group+" to commit its offsets", func() (bool, error) {
		committed, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: all})
		if err != nil {
			return false, fmt.Errorf("reading the offsets of group %s: %w", group, err)
		}
		for _, p := range all {
			end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
			if err != nil {
				return false, fmt.Errorf("reading the end offset of %s/%d: %w", topic, p, err)
			}
			if block := committed.GetBlock(topic, p); block == nil || block.Offset != end {
				return false, nil
			}
		}
		return true, nil
	})
}

// poll calls try until it reports done or fails, up to waitTimeout.
func poll(ctx context.Context, what string, try func() (bool, error)) error {
	deadline := time.Now().Add(waitTimeout)
	for {
		done, err := try()
		if err != nil || done {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: gave up after %v", what, waitTimeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// produce sends n messages with IDs m<first>... and returns the IDs.
func produce(producer sarama.SyncProducer, topic string, first, n int) ([]string, error) {
	var ids []string
	for i := first; i < first+n; i++ {
		id := fmt.Sprintf("m%02d", i)
		msg := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(id), Value: sarama.StringEncoder("order " + id)}
		if _, _, err := producer.SendMessage(msg); err != nil {
			return nil, fmt.Errorf("producing %s to %s: %w", id, topic, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// printAssignment prints each member's partitions in member order.
func printAssignment(out io.Writer, names []string, assignment map[string][]int32) {
	for _, name := range names {
		note := ""
		if len(assignment[name]) == 0 {
			note = " (idle: more members than partitions)"
		}
		fmt.Fprintf(out, "  %s owns %v%s\n", name, assignment[name], note)
	}
}

// member is one consumer of a group, with its own connection.
type member struct {
	group, name, topic string
	cg                 sarama.ConsumerGroup
	board              *board
	handle             func(*sarama.ConsumerMessage) error // the work on one message
	done               chan struct{}                       // closed when the Consume loop has returned
}

// startMember joins the group in the background.
func startMember(ctx context.Context, brokers []string, topic, group, name string, b *board) (*member, error) {
	cg, err := sarama.NewConsumerGroup(brokers, group, newConfig(name))
	if err != nil {
		return nil, fmt.Errorf("joining group %s as %s: %w", group, name, err)
	}
	m := &member{group: group, name: name, topic: topic, cg: cg, board: b, done: make(chan struct{})}
	// The work on a message: here, remember its ID.
	m.handle = func(msg *sarama.ConsumerMessage) error {
		b.record(group, name, string(msg.Key))
		return nil
	}
	go func() {
		for err := range cg.Errors() {
			slog.Warn("consumer group error", "group", group, "member", name, "err", err)
		}
	}()
	go func() {
		defer close(m.done)
		for {
			// Consume runs one generation of the group: it returns at the
			// next rebalance, and the loop joins again for the next one.
			err := cg.Consume(ctx, []string{topic}, m)
			if errors.Is(err, sarama.ErrClosedConsumerGroup) || ctx.Err() != nil {
				return
			}
			if err != nil {
				slog.Warn("consume failed, joining again", "group", group, "member", name, "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(500 * time.Millisecond):
				}
			}
		}
	}()
	return m, nil
}

// Setup runs at the start of every generation with this member's claims.
func (m *member) Setup(s sarama.ConsumerGroupSession) error {
	claimed := slices.Clone(s.Claims()[m.topic])
	slices.Sort(claimed)
	m.board.assigned(m.group, m.name, s.GenerationID(), claimed)
	return nil
}

// Cleanup runs at the end of every generation; nothing to release here.
func (m *member) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim processes one partition until the generation ends, with
// consumeClaim, this lab's exercise (solution.go; the template is
// exercise.go). If it fails, the run stops with its error.
func (m *member) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	err := consumeClaim(s, claim, m.handle)
	if err != nil {
		m.board.fail(fmt.Errorf("%s of group %s, partition %d: %w", m.name, m.group, claim.Partition(), err))
	}
	return err
}

// close leaves the group and waits for the Consume loop to end.
func (m *member) close() {
	if err := m.cg.Close(); err != nil {
		slog.Warn("closing consumer group", "group", m.group, "member", m.name, "err", err)
	}
	<-m.done
}

// closeMembers closes members concurrently, so the group does not go
// through one rebalance per departure one after another.
func closeMembers(members []*member) {
	var wg sync.WaitGroup
	for _, m := range members {
		wg.Go(m.close)
	}
	wg.Wait()
}

// board collects what every member reports; the main goroutine waits on it.
// Members never block on it, so a slow reader cannot stall a rebalance.
type board struct {
	mu        sync.Mutex
	claims    map[string]map[string]claim    // group -> member -> latest claim
	processed map[string]map[string][]string // group -> member -> IDs
	failure   error                          // the first ConsumeClaim that failed
	changed   chan struct{}                  // signalled after every report
}

type claim struct {
	generation int32
	partitions []int32
}

func newBoard() *board {
	return &board{
		claims:    map[string]map[string]claim{},
		processed: map[string]map[string][]string{},
		changed:   make(chan struct{}, 1),
	}
}

func (b *board) notify() {
	select {
	case b.changed <- struct{}{}:
	default: // a signal is already pending
	}
}

func (b *board) assigned(group, member string, generation int32, partitions []int32) {
	b.mu.Lock()
	if b.claims[group] == nil {
		b.claims[group] = map[string]claim{}
	}
	b.claims[group][member] = claim{generation, partitions}
	b.mu.Unlock()
	b.notify()
}

func (b *board) record(group, member, id string) {
	b.mu.Lock()
	if b.processed[group] == nil {
		b.processed[group] = map[string][]string{}
	}
	b.processed[group][member] = append(b.processed[group][member], id)
	b.mu.Unlock()
	b.notify()
}

// fail records the first member that could not process its partition.
func (b *board) fail(err error) {
	b.mu.Lock()
	if b.failure == nil {
		b.failure = err
	}
	b.mu.Unlock()
	b.notify()
}

// forget drops a member that left from the group's current claims.
func (b *board) forget(group, member string) {
	b.mu.Lock()
	delete(b.claims[group], member)
	b.mu.Unlock()
}

func (b *board) generation(group, member string) int32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.claims[group][member].generation
}

// waitFor waits until cond (called with the lock held) is true, or a
// member failed.
func (b *board) waitFor(ctx context.Context, what string, cond func() bool) error {
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		ok, failure := cond(), b.failure
		b.mu.Unlock()
		if failure != nil {
			return failure
		}
		if ok {
			return nil
		}
		select {
		case <-b.changed:
		case <-deadline.C:
			return fmt.Errorf("waiting for %s: nothing after %v", what, waitTimeout)
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		}
	}
}

// waitStable waits until exactly the given members have set up the same
// generation, newer than after, and returns their partitions. One
// generation means one assignment plan, computed by the group's leader.
func (b *board) waitStable(ctx context.Context, group string, members []string, after int32) (map[string][]int32, error) {
	var result map[string][]int32
	err := b.waitFor(ctx, "group "+group+" to settle on "+strings.Join(members, ", "), func() bool {
		claims := b.claims[group]
		if len(claims) != len(members) {
			return false
		}
		gen := claims[members[0]].generation
		result = map[string][]int32{}
		for _, name := range members {
			c, ok := claims[name]
			if !ok || c.generation != gen || gen <= after {
				return false
			}
			result[name] = c.partitions
		}
		return true
	})
	return result, err
}

// waitProcessed waits until the group processed every ID.
func (b *board) waitProcessed(ctx context.Context, group string, ids []string) error {
	return b.waitFor(ctx, fmt.Sprintf("group %s to process %d messages", group, len(ids)), func() bool {
		return b.distinctLocked(group, ids) == len(ids)
	})
}

// distinct counts how many of ids the group processed at least once.
func (b *board) distinct(group string, ids []string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.distinctLocked(group, ids)
}

func (b *board) distinctLocked(group string, ids []string) int {
	seen := map[string]bool{}
	for _, list := range b.processed[group] {
		for _, id := range list {
			seen[id] = true
		}
	}
	n := 0
	for _, id := range ids {
		if seen[id] {
			n++
		}
	}
	return n
}

// duplicates counts the messages the group processed more than once,
// across all its members.
func (b *board) duplicates(group string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	count := map[string]int{}
	for _, list := range b.processed[group] {
		for _, id := range list {
			count[id]++
		}
	}
	n := 0
	for _, c := range count {
		n += c - 1
	}
	return n
}

// perMember says how many messages each member processed.
func (b *board) perMember(group string, names []string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var parts []string
	for _, name := range names {
		parts = append(parts, fmt.Sprintf("%s %d", name, len(b.processed[group][name])))
	}
	return strings.Join(parts, ", ")
}

// processedByMember copies the processed IDs out.
func (b *board) processedByMember() map[string]map[string][]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]map[string][]string{}
	for g, byMember := range b.processed {
		out[g] = map[string][]string{}
		for name, ids := range byMember {
			out[g][name] = slices.Clone(ids)
		}
	}
	return out
}
