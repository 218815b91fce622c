// Command 10-offset-replay shows how a Kafka consumer chooses where to
// start: replaying from the oldest offset rebuilds the state, a stored
// position resumes exactly after the last record processed, and a
// timestamp finds where a point in time begins.
//
// The program produces eight bookings with explicit timestamps to a topic
// that keeps every record, then:
//
//  1. replays the topic from the oldest offset and rebuilds the seats booked
//     per event;
//  2. resumes after a stop in two ways: (a) a consumer group that marks each
//     record after processing it and commits, restarted as a new member;
//     (b) a consumer that stores its state and the next offset to read per
//     partition in one file, replaced atomically, and resumes with
//     ConsumePartition at the stored offset;
//  3. looks up the offset of a point in time with GetOffset(timestamp);
//  4. shows the pitfall of the literal offset 0: once the start of the log is
//     gone (DeleteRecords here, retention in production), offset 0 is out of
//     range, while OffsetOldest starts at the first record that is left.
//
// Usage:
//
//	go run ./labs/10-offset-replay [-brokers 127.0.0.1:9092] [-topic lab10.bookings] [-group lab10.projector] [-keep]
//
// The topic and the group are deleted at the end unless -keep is given,
// also when Ctrl-C stops the run. The capstone's topic, events, is refused.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/contracts"
	"example.com/myevents/labs/labkit"
)

// defaultBrokers is the local development Kafka.
const defaultBrokers = "127.0.0.1:9092"

// partitions is the partition count of the lab's topic.
const partitions = 2

// stopAfter is how many records of each partition the first consumer
// processes before it stops, as if its process had been killed.
const stopAfter = 2

// deleteBelow is where part 4 cuts the start of partition 0 off.
const deleteBelow = 2

// waitTimeout bounds every wait for records the lab knows are there.
const waitTimeout = 30 * time.Second

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

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("10-offset-replay", flag.ContinueOnError)
	brokerList := fs.String("brokers", "", "Kafka bootstrap brokers, comma-separated (default $KAFKA_BROKERS, else "+defaultBrokers+")")
	topic := fs.String("topic", "lab10.bookings", "name of the topic the lab creates empty at the start and deletes at the end")
	group := fs.String("group", "lab10.projector", "name of the consumer group of part 2a, deleted at the start and at the end")
	keep := fs.Bool("keep", false, "keep the topic and the group at the end instead of deleting them, to look at them")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; see -h", fs.Args())
	}
	// Refuse the capstone's topic and bad names before connecting: the
	// broker would refuse an empty group only at part 2a, after the
	// produce and the replay, and it would accept "events".
	if err := labkit.CheckTopic(*topic, "lab10.bookings", true); err != nil {
		return err
	}
	if *group == "" {
		return errors.New("-group is empty: give the consumer group of part 2a a name, such as lab10.projector")
	}
	// The environment supplies the brokers unless -brokers does.
	if *brokerList == "" {
		*brokerList = labkit.EnvOr("KAFKA_BROKERS", defaultBrokers)
	}
	brokers := labkit.SplitBrokers(*brokerList)
	if len(brokers) == 0 {
		return errors.New("no Kafka broker given: pass -brokers host:port or set KAFKA_BROKERS")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	// Connect.
	client, err := labkit.ConnectKafka(ctx, brokers, newConfig())
	if err != nil {
		return err
	}
	defer client.Close()
	fmt.Fprintf(out, "brokers: %s\n", strings.Join(brokers, ","))
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		return fmt.Errorf("creating the Kafka admin: %w", err)
	}

	// Declare. A previous run may have left the topic, or committed
	// offsets of the group that would make this run start half-way, so
	// remove both and create the topic empty. retention.ms=-1 keeps every
	// record: the topic is an event store, not a buffer.
	defer func() {
		if *keep {
			return
		}
		if err := admin.DeleteConsumerGroup(*group); err != nil && !errors.Is(err, sarama.ErrGroupIDNotFound) {
			log.Warn("deleting consumer group", "group", *group, "err", err)
		}
		if err := admin.DeleteTopic(*topic); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			log.Warn("deleting topic", "topic", *topic, "err", err)
		}
	}()
	if err := admin.DeleteConsumerGroup(*group); err != nil && !errors.Is(err, sarama.ErrGroupIDNotFound) {
		return fmt.Errorf("deleting consumer group %s left by a previous run: %w", *group, err)
	}
	if err := recreateTopic(ctx, admin, *topic); err != nil {
		return err
	}
	if err := client.RefreshMetadata(*topic); err != nil {
		return fmt.Errorf("reading metadata of %s: %w", *topic, err)
	}
	fmt.Fprintf(out, "topic %s: %d partitions, retention.ms=-1 (keep every record)\n", *topic, partitions)

	// Publish eight bookings, one an hour, each with an explicit record
	// timestamp. The key is the event ID, so ev-1's bookings share one
	// partition and ev-2's the other.
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		return fmt.Errorf("creating the Kafka producer: %w", err)
	}
	defer producer.Close()
	for _, b := range bookings() {
		value, err := contracts.Wrap(b)
		if err != nil {
			return err
		}
		p, off, err := producer.SendMessage(&sarama.ProducerMessage{
			Topic:     *topic,
			Key:       sarama.StringEncoder(b.PartitionKey()),
			Value:     sarama.ByteEncoder(value),
			Timestamp: b.Date, // CreateTime: the time the booking was made
		})
		if err != nil {
			return fmt.Errorf("producing %s: %w", b.ID, err)
		}
		fmt.Fprintf(out, "produced %s (%s, seats %d) at %s -> partition %d offset %d\n",
			b.ID, b.EventID, b.Seats, clock(b.Date), p, off)
	}
	end, err := endOffsets(client, *topic)
	if err != nil {
		return err
	}
	produced := len(bookings())

	// ---- 1. Replay from the oldest offset. ----
	fmt.Fprintln(out, "1. replay from the oldest offset")
	replayed, err := replay(ctx, client, *topic)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "replayed %d of %d records: %s\n", len(replayed.records), produced, replayed.state)

	// ---- 2a. A consumer group: mark after processing, then commit. ----
	fmt.Fprintf(out, "2a. consumer group %s: MarkMessage after processing, then Commit\n", *group)
	half := stopOffsets(end, stopAfter)
	first, err := runGroupMember(ctx, brokers, *group, *topic, half)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "member 1 started at %s, processed %s, then stopped\n", startOffsets(first.startedAt), first.records)
	committed, err := committedOffsets(admin, *group, *topic)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "committed offsets (next to read): %s\n", startOffsets(committed))
	// A restart is a new member of the same group: it starts at the
	// committed offsets.
	second, err := runGroupMember(ctx, brokers, *group, *topic, end)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "member 2 resumed at %s, processed %s\n", startOffsets(second.startedAt), second.records)
	fmt.Fprintf(out, "group: %s\n", checkOnce(replayed.records, first.records, second.records))

	// ---- 2b. Self-stored offsets: state and position in one file. ----
	fmt.Fprintln(out, "2b. self-stored offsets: state and next offsets in one file, replaced atomically")
	dir, err := os.MkdirTemp("", "lab10-")
	if err != nil {
		return fmt.Errorf("creating a directory for the checkpoint: %w", err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "checkpoint.json")
	// runSelfStored is this lab's exercise (solution.go; the template is
	// exercise.go).
	run1, err := runSelfStored(ctx, client, *topic, path, half)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "run 1 started at %s, processed %s, then stopped\n", startOffsets(run1.startedAt), run1.records)
	saved, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		fmt.Fprintln(out, "saved nothing: no record processed yet")
	case err != nil:
		return fmt.Errorf("reading the checkpoint: %w", err)
	default:
		fmt.Fprintf(out, "saved %s\n", saved)
	}
	run2, err := runSelfStored(ctx, client, *topic, path, end)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "run 2 resumed at %s, processed %s\n", startOffsets(run2.startedAt), run2.records)
	fmt.Fprintf(out, "self-stored: %s; %s\n", checkOnce(replayed.records, run1.records, run2.records), run2.state)

	// ---- 3. Start from a point in time. ----
	fmt.Fprintln(out, "3. start from a point in time")
	noon := day.Add(12 * time.Hour)
	at, err := offsetsForTime(client, *topic, noon)
	if err != nil {
		return err
	}
	// Consume each partition from the offset found for its part of the
	// log.
	since, err := readFrom(ctx, client, *topic, at)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "offsets for %s: %s\n", clock(noon), describeAt(at, since.records))
	late := day.Add(16 * time.Hour)
	none, err := offsetsForTime(client, *topic, late)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "offsets for %s: %s (no record at or after it)\n", clock(late), startOffsets(none))
	fmt.Fprintf(out, "bookings since %s: %s\n", clock(noon), since.records.ids())

	// ---- 4. The pitfall: offset 0 once the start of the log is gone. ----
	fmt.Fprintln(out, "4. the pitfall: the literal offset 0 after retention")
	// Retention deletes old records on a timer; DeleteRecords does the same
	// on request, so this run is deterministic.
	if err := admin.DeleteRecords(*topic, map[int32]int64{0: deleteBelow}); err != nil {
		return fmt.Errorf("deleting records of %s/0: %w", *topic, err)
	}
	oldest, err := client.GetOffset(*topic, 0, sarama.OffsetOldest)
	if err != nil {
		return fmt.Errorf("reading the oldest offset of %s/0: %w", *topic, err)
	}
	fmt.Fprintf(out, "DeleteRecords removed partition 0 below offset %d; its log now starts at %d\n", deleteBelow, oldest)
	// Pitfall: offset 0 is a position, not "the beginning".
	if _, err := firstRecord(ctx, client, *topic, 0, 0); err != nil {
		fmt.Fprintf(out, "ConsumePartition(partition 0, offset 0): %v\n", err)
	} else {
		fmt.Fprintln(out, "ConsumePartition(partition 0, offset 0): no error (this broker kept the records)")
	}
	// Fix: OffsetOldest asks the broker where the log starts now.
	r, err := firstRecord(ctx, client, *topic, 0, sarama.OffsetOldest)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "ConsumePartition(partition 0, OffsetOldest): first record at offset %d (%s)\n", r.offset, r.id)
	return nil
}

// day is the day the bookings were made.
var day = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

// bookings are the records of the lab, one an hour from 08:00 to 15:00.
func bookings() []*contracts.EventBooked {
	seats := []int{2, 1, 4, 2, 1, 3, 2, 5}
	var out []*contracts.EventBooked
	for i, n := range seats {
		event := "ev-1"
		if i%2 == 1 {
			event = "ev-2"
		}
		out = append(out, &contracts.EventBooked{
			ID:      fmt.Sprintf("bk-%d", i+1),
			EventID: event,
			UserID:  fmt.Sprintf("u-%d", i%3+1),
			Seats:   n,
			Date:    day.Add(time.Duration(8+i) * time.Hour),
		})
	}
	return out
}

// record is one processed Kafka record.
type record struct {
	partition int32
	offset    int64
	at        time.Time // record timestamp
	id        string    // booking ID
}

// records prints as "p0: bk-1 bk-3, p1: bk-2 bk-4", sorted by partition
// and offset.
type records []record

func (rs records) String() string {
	sorted := slices.Clone(rs)
	slices.SortFunc(sorted, func(a, b record) int {
		if a.partition != b.partition {
			return int(a.partition - b.partition)
		}
		return int(a.offset - b.offset)
	})
	var parts []string
	for i, r := range sorted {
		if i == 0 || r.partition != sorted[i-1].partition {
			parts = append(parts, fmt.Sprintf("p%d:", r.partition))
		}
		parts[len(parts)-1] += " " + r.id
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

// ids lists the booking IDs in the order of their record timestamps.
func (rs records) ids() string {
	sorted := slices.Clone(rs)
	slices.SortFunc(sorted, func(a, b record) int { return a.at.Compare(b.at) })
	var ids []string
	for _, r := range sorted {
		ids = append(ids, r.id)
	}
	return strings.Join(ids, " ")
}

// state is what the consumer builds: seats booked per event.
type state map[string]int

func (s state) String() string {
	var parts []string
	for _, ev := range slices.Sorted(maps.Keys(s)) {
		parts = append(parts, fmt.Sprintf("%s %d seats", ev, s[ev]))
	}
	return strings.Join(parts, ", ")
}

// apply processes one record: decode the envelope and add the seats.
func apply(s state, m *sarama.ConsumerMessage) (record, error) {
	_, ev, err := contracts.Unwrap(m.Value)
	if err != nil {
		return record{}, fmt.Errorf("%s/%d offset %d: %w", m.Topic, m.Partition, m.Offset, err)
	}
	b, ok := ev.(*contracts.EventBooked)
	if !ok {
		return record{}, fmt.Errorf("%s/%d offset %d: unexpected %s", m.Topic, m.Partition, m.Offset, ev.EventName())
	}
	s[b.EventID] += b.Seats
	return record{partition: m.Partition, offset: m.Offset, at: m.Timestamp, id: b.ID}, nil
}

// result is what one consumer run did.
type result struct {
	records   records
	state     state
	startedAt map[int32]int64 // first offset asked for, per partition
}

// replay reads every partition from the oldest offset to its end and
// rebuilds the state from nothing.
func replay(ctx context.Context, client sarama.Client, topic string) (result, error) {
	return readFrom(ctx, client, topic, nil)
}

// readFrom reads every partition from its offset in from (the oldest one
// when from has none; -1, "no record at or after that time", reads
// nothing) to its end, and builds the state from what it read.
func readFrom(ctx context.Context, client sarama.Client, topic string, from map[int32]int64) (result, error) {
	end, err := endOffsets(client, topic)
	if err != nil {
		return result{}, err
	}
	res := result{state: state{}}
	for p := range int32(partitions) {
		start, ok := from[p]
		if !ok {
			start = sarama.OffsetOldest
		} else if start == -1 {
			continue
		}
		err := consumeRange(ctx, client, topic, p, start, end[p], func(m *sarama.ConsumerMessage) error {
			r, err := apply(res.state, m)
			res.records = append(res.records, r)
			return err
		})
		if err != nil {
			return result{}, err
		}
	}
	return res, nil
}

// memberHandler is the sarama.ConsumerGroupHandler of one group member.
// It processes records below its goal offset per partition and tells the
// caller when every partition reached its goal, or when processing failed.
type memberHandler struct {
	goal   map[int32]int64 // process offsets below this, per partition
	done   chan int32      // a partition reached its goal
	failed chan error      // a record could not be processed (buffered, 1)

	mu      sync.Mutex
	reached map[int32]bool
	res     result
}

func (h *memberHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *memberHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim runs in its own goroutine for each partition of this member.
func (h *memberHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	p := claim.Partition()
	goal := h.goal[p]
	h.mu.Lock()
	h.res.startedAt[p] = claim.InitialOffset()
	h.mu.Unlock()
	if claim.InitialOffset() >= goal {
		h.reach(p)
	}
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			if m.Offset >= goal {
				// Past the point where this member "crashes": leave the
				// record unprocessed and unmarked. Records arrive in
				// offset order, so everything below the goal is done.
				// Returning here instead would end the session of every
				// partition.
				h.reach(p)
				continue
			}
			// Process first...
			h.mu.Lock()
			r, err := apply(h.res.state, m)
			if err == nil {
				h.res.records = append(h.res.records, r)
			}
			h.mu.Unlock()
			if err != nil {
				// ...and if that fails, stop without marking: the
				// committed offset stays at this record, so a restarted
				// member reads it again instead of skipping it. The
				// error ends the session of every partition.
				h.fail(err)
				return err
			}
			// ...then mark and commit. A crash between the two processes
			// this record again on restart: at least once, never lost.
			// MarkMessage stores offset+1, the next offset to read.
			sess.MarkMessage(m, "")
			sess.Commit()
			if m.Offset+1 >= goal {
				h.reach(p)
			}
		case <-sess.Context().Done():
			return nil
		}
	}
}

// fail reports the first processing error to the caller; a member that
// rejoins meets the same record again, and its error is dropped.
func (h *memberHandler) fail(err error) {
	select {
	case h.failed <- err:
	default:
	}
}

// reach reports a partition as done, once.
func (h *memberHandler) reach(p int32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.reached[p] {
		h.reached[p] = true
		h.done <- p
	}
}

// runGroupMember joins the group as a new member (a new client, as a
// restarted process would), processes the records below offset until[p] in
// each partition p and leaves the group.
func runGroupMember(ctx context.Context, brokers []string, group, topic string, until map[int32]int64) (result, error) {
	cfg := newConfig()
	// A group without committed offsets starts at the oldest record. The
	// default, OffsetNewest, would skip everything produced before the
	// group first joined.
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	// Commit explicitly, right after marking, instead of once a second.
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	member, err := sarama.NewConsumerGroup(brokers, group, cfg)
	if err != nil {
		return result{}, fmt.Errorf("joining consumer group %s: %w", group, err)
	}
	defer member.Close()

	h := &memberHandler{goal: until, done: make(chan int32, partitions), failed: make(chan error, 1),
		reached: map[int32]bool{}, res: result{state: state{}, startedAt: map[int32]int64{}}}
	var groupErr error
	var errs sync.WaitGroup
	errs.Go(func() {
		for err := range member.Errors() {
			if groupErr == nil {
				groupErr = err
			}
		}
	})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	consumed := make(chan error, 1)
	go func() {
		// Consume returns at every rebalance; call it again until the
		// context ends.
		for {
			if err := member.Consume(ctx, []string{topic}, h); err != nil {
				consumed <- err
				return
			}
			if ctx.Err() != nil {
				consumed <- nil
				return
			}
		}
	}()

	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	for reached := 0; reached < len(until); {
		select {
		case <-h.done:
			reached++
		case err := <-h.failed:
			return result{}, fmt.Errorf("group %s stopped at a record it could not process, and left it unmarked: %w", group, err)
		case err := <-consumed:
			return result{}, fmt.Errorf("consuming %s in group %s: %w", topic, group, err)
		case <-timeout.C:
			return result{}, fmt.Errorf("consuming %s in group %s: the records did not arrive within %v", topic, group, waitTimeout)
		case <-ctx.Done():
			return result{}, fmt.Errorf("consuming %s in group %s: %w", topic, group, ctx.Err())
		}
	}
	// Stop: leave the group. What was committed stays with the group.
	cancel()
	if err := <-consumed; err != nil {
		return result{}, fmt.Errorf("consuming %s in group %s: %w", topic, group, err)
	}
	if err := member.Close(); err != nil {
		return result{}, fmt.Errorf("leaving consumer group %s: %w", group, err)
	}
	errs.Wait()
	if groupErr != nil {
		return result{}, fmt.Errorf("consumer group %s: %w", group, groupErr)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.res, nil
}

// checkpoint is what the self-storing consumer keeps: its state and, in the
// same file, the next offset to read per partition. Written together and
// replaced atomically, the two can never disagree: after a crash, either
// both include a record or neither does.
type checkpoint struct {
	Seats state           `json:"seats"`
	Next  map[int32]int64 `json:"next"`
}

// loadCheckpoint reads the checkpoint; a missing file is a first start.
func loadCheckpoint(path string) (checkpoint, error) {
	cp := checkpoint{Seats: state{}, Next: map[int32]int64{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return cp, nil
	}
	if err != nil {
		return cp, fmt.Errorf("reading checkpoint %s: %w", path, err)
	}
	if err := json.Unmarshal(data, &cp); err != nil {
		return cp, fmt.Errorf("decoding checkpoint %s: %w", path, err)
	}
	return cp, nil
}

// saveCheckpoint writes the checkpoint to a new file, flushes it to disk and
// renames it over the old one. A rename within one directory is atomic: a
// crash leaves the old checkpoint or the new one, never half of each.
func saveCheckpoint(path string, cp checkpoint) error {
	data, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("encoding checkpoint: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "checkpoint-*.tmp")
	if err != nil {
		return fmt.Errorf("writing checkpoint: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing checkpoint: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("flushing checkpoint: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing checkpoint: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replacing checkpoint: %w", err)
	}
	return nil
}

// consumeRange hands every record of one partition from offset from (an
// offset or sarama.OffsetOldest) up to, not including, offset until to
// handle, in order.
func consumeRange(ctx context.Context, client sarama.Client, topic string, p int32, from, until int64, handle func(*sarama.ConsumerMessage) error) error {
	// Nothing to read? Then do not wait for a record that never comes.
	start := from
	if from == sarama.OffsetOldest {
		var err error
		if start, err = client.GetOffset(topic, p, sarama.OffsetOldest); err != nil {
			return fmt.Errorf("reading the oldest offset of %s/%d: %w", topic, p, err)
		}
	}
	if start >= until {
		return nil
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return fmt.Errorf("creating the Kafka consumer: %w", err)
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(topic, p, from)
	if err != nil {
		return fmt.Errorf("consuming %s/%d from offset %d: %w", topic, p, from, err)
	}
	defer pc.Close()
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	for {
		select {
		case m := <-pc.Messages():
			if m.Offset >= until {
				return nil
			}
			if err := handle(m); err != nil {
				return err
			}
			if m.Offset+1 >= until {
				return nil
			}
		case cerr := <-pc.Errors():
			return fmt.Errorf("consuming %s/%d: %w", topic, p, cerr)
		case <-timeout.C:
			return fmt.Errorf("consuming %s/%d: records below offset %d did not arrive within %v", topic, p, until, waitTimeout)
		case <-ctx.Done():
			return fmt.Errorf("consuming %s/%d: %w", topic, p, ctx.Err())
		}
	}
}

// firstRecord returns the first record ConsumePartition hands out from
// offset.
func firstRecord(ctx context.Context, client sarama.Client, topic string, p int32, offset int64) (record, error) {
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return record{}, fmt.Errorf("creating the Kafka consumer: %w", err)
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(topic, p, offset)
	if err != nil {
		return record{}, err
	}
	defer pc.Close()
	select {
	case m := <-pc.Messages():
		return apply(state{}, m)
	case cerr := <-pc.Errors():
		return record{}, cerr
	case <-time.After(waitTimeout):
		return record{}, fmt.Errorf("consuming %s/%d: no record within %v", topic, p, waitTimeout)
	case <-ctx.Done():
		return record{}, fmt.Errorf("consuming %s/%d: %w", topic, p, ctx.Err())
	}
}

// offsetsForTime asks, per partition, for the first offset whose record
// timestamp is at or after t. -1 means no such record.
func offsetsForTime(client sarama.Client, topic string, t time.Time) (map[int32]int64, error) {
	return offsetsAt(client, topic, t.UnixMilli(), "the offset of "+clock(t))
}

// endOffsets returns the offset after the last record, per partition.
func endOffsets(client sarama.Client, topic string) (map[int32]int64, error) {
	return offsetsAt(client, topic, sarama.OffsetNewest, "the end offset")
}

// offsetsAt asks every partition for the offset at when (milliseconds
// since 1970, or sarama.OffsetNewest); what names it in an error.
func offsetsAt(client sarama.Client, topic string, when int64, what string) (map[int32]int64, error) {
	at := map[int32]int64{}
	for p := range int32(partitions) {
		off, err := client.GetOffset(topic, p, when)
		if err != nil {
			return nil, fmt.Errorf("reading %s of %s/%d: %w", what, topic, p, err)
		}
		at[p] = off
	}
	return at, nil
}

// stopOffsets is where a run that processes n records of each partition
// stops: offset n, or the end of a shorter partition.
func stopOffsets(end map[int32]int64, n int64) map[int32]int64 {
	until := map[int32]int64{}
	for p, e := range end {
		until[p] = min(e, n)
	}
	return until
}

// committedOffsets asks the broker what the group committed.
func committedOffsets(admin sarama.ClusterAdmin, group, topic string) (map[int32]int64, error) {
	ps := make([]int32, partitions)
	for i := range ps {
		ps[i] = int32(i)
	}
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: ps})
	if err != nil {
		return nil, fmt.Errorf("reading the offsets of group %s: %w", group, err)
	}
	out := map[int32]int64{}
	for _, p := range ps {
		if b := resp.GetBlock(topic, p); b != nil {
			out[p] = b.Offset
		}
	}
	return out, nil
}

// checkOnce compares what two consumer runs processed with what a replay
// found: every record exactly once.
func checkOnce(all, first, second records) string {
	count := map[string]int{}
	for _, r := range append(slices.Clone(first), second...) {
		count[r.id]++
	}
	var twice, missing []string
	for _, r := range all {
		switch n := count[r.id]; {
		case n == 0:
			missing = append(missing, r.id)
		case n > 1:
			twice = append(twice, r.id)
		}
	}
	list := func(ids []string) string {
		if len(ids) == 0 {
			return "none"
		}
		return strings.Join(ids, " ")
	}
	return fmt.Sprintf("%d processed, twice: %s, missing: %s", len(first)+len(second), list(twice), list(missing))
}

// startOffsets prints offsets per partition as "p0=2 p1=2".
func startOffsets(m map[int32]int64) string {
	var parts []string
	for _, p := range slices.Sorted(maps.Keys(m)) {
		switch m[p] {
		case sarama.OffsetOldest:
			parts = append(parts, fmt.Sprintf("p%d=oldest", p))
		default:
			parts = append(parts, fmt.Sprintf("p%d=%d", p, m[p]))
		}
	}
	return strings.Join(parts, " ")
}

// describeAt prints looked-up offsets with the record found there.
func describeAt(at map[int32]int64, found records) string {
	var parts []string
	for _, p := range slices.Sorted(maps.Keys(at)) {
		s := fmt.Sprintf("p%d=%d", p, at[p])
		for _, r := range found {
			if r.partition == p && r.offset == at[p] {
				s += fmt.Sprintf(" (%s at %s)", r.id, clock(r.at))
			}
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// newConfig is the sarama configuration of this lab.
func newConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	// Both the embedded Kafka and Kafka 4.x accept protocol version 3.6.
	cfg.Version = sarama.V3_6_0_0
	cfg.ClientID = "myevents-10-offset-replay"
	cfg.Net.DialTimeout = 3 * time.Second
	cfg.Metadata.Retry.Max = 1
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Idempotent = true
	cfg.Net.MaxOpenRequests = 1
	cfg.Consumer.Return.Errors = true
	// The lab stops reading at the end of a partition, and closing a
	// partition consumer waits for the fetch in flight, which the broker
	// holds open for up to MaxWaitTime when there is nothing new. Keep it
	// short so that the lab does not wait half a second per partition.
	cfg.Consumer.MaxWaitTime = 50 * time.Millisecond
	return cfg
}

// recreateTopic deletes the topic if a previous run left it behind and
// creates it empty, keeping every record.
func recreateTopic(ctx context.Context, admin sarama.ClusterAdmin, name string) error {
	if err := admin.DeleteTopic(name); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return fmt.Errorf("deleting topic %s: %w", name, err)
	}
	forever := "-1"
	// Apache Kafka deletes a topic in the background; until it is gone,
	// creating it again answers "already exists", so retry for a while.
	deadline := time.Now().Add(waitTimeout)
	for {
		err := admin.CreateTopic(name, &sarama.TopicDetail{
			NumPartitions:     partitions,
			ReplicationFactor: -1, // the broker's default
			ConfigEntries:     map[string]*string{"retention.ms": &forever},
		}, false) // validateOnly
		if err == nil {
			return nil
		}
		if !errors.Is(err, sarama.ErrTopicAlreadyExists) || time.Now().After(deadline) {
			return fmt.Errorf("creating topic %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("creating topic %s: %w", name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// clock prints a time of the lab's day as "08:00".
func clock(t time.Time) string { return t.UTC().Format("15:04") }
