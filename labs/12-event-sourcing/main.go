// Command 12-event-sourcing shows state rebuilt by replaying a Kafka log: four
// timestamped user events are the only record of what happened, and
// replaying them from the oldest offset gives the users at the end, or as
// of any earlier moment, together with a complete audit trail.
//
// It appends user 1 "Alice" created at 08:00, user 2 "Bob" created at 09:00,
// user 1 deleted at 13:00 and user 2 renamed "Cedric" at 15:00 (UTC, on
// 2024-05-06) to a topic with two partitions, key = user ID, each record
// carrying its event's time. Then it forgets what it wrote, reads the log
// back, merges the partitions by timestamp, and prints the audit trail and
// the state at a few moments. Finally it replays the log a second time into
// the same state, once skipping what was already applied and once not.
//
// With -replay-only it only reads: run it once with -keep, then rebuild the
// state from the kept log as a service would at start-up.
//
// Usage:
//
//	go run ./labs/12-event-sourcing [-brokers 127.0.0.1:9092] [-topic lab12.users] [-as-of 10:00,14:00] [-keep] [-replay-only]
//
// The topic is deleted at the end unless -keep or -replay-only is given,
// also when Ctrl-C stops the run.
package main

import (
	"cmp"
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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"example.com/myevents/labs/labkit"
	"github.com/IBM/sarama"
)

const (
	defaultBrokers = "127.0.0.1:9092" // the local development Kafka
	partitions     = 2                // partitions of the lab's topic
	readTimeout    = 30 * time.Second // longest wait for the log to be read back
)

// day is the date of the four events; times are UTC.
var day = time.Date(2024, time.May, 6, 0, 0, 0, 0, time.UTC)

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

// The lab's own events. Each names its event and the user it is about; the
// user ID is the partition key, so all events of one user stay in order on
// one partition.

// Event is what every user event implements.
type Event interface {
	EventName() string
	UserID() int
}

// UserCreated: a user signed up.
type UserCreated struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

// UserDeleted: a user was removed.
type UserDeleted struct {
	ID int `json:"id"`
}

// UserRenamed: a user changed their name.
type UserRenamed struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

func (e UserCreated) EventName() string { return "user.created" }
func (e UserDeleted) EventName() string { return "user.deleted" }
func (e UserRenamed) EventName() string { return "user.renamed" }
func (e UserCreated) UserID() int       { return e.ID }
func (e UserDeleted) UserID() int       { return e.ID }
func (e UserRenamed) UserID() int       { return e.ID }

// envelope is the record value: the event's name beside its payload, as on
// the project's events topic, so one topic carries every event type.
type envelope struct {
	EventName string          `json:"eventName"`
	Payload   json.RawMessage `json:"payload"`
}

// decode turns a record value back into an event.
func decode(value []byte) (Event, json.RawMessage, error) {
	var env envelope
	if err := json.Unmarshal(value, &env); err != nil {
		return nil, nil, fmt.Errorf("decoding envelope: %w", err)
	}
	var ev Event
	var err error
	switch env.EventName {
	case "user.created":
		var e UserCreated
		err = json.Unmarshal(env.Payload, &e)
		ev = e
	case "user.deleted":
		var e UserDeleted
		err = json.Unmarshal(env.Payload, &e)
		ev = e
	case "user.renamed":
		var e UserRenamed
		err = json.Unmarshal(env.Payload, &e)
		ev = e
	default:
		return nil, nil, fmt.Errorf("unknown event name %q", env.EventName)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("decoding %s payload: %w", env.EventName, err)
	}
	return ev, env.Payload, nil
}

// history is what happened that day, in the order it happened.
func history() []struct {
	at    time.Time
	event Event
} {
	at := func(hour int) time.Time { return day.Add(time.Duration(hour) * time.Hour) }
	return []struct {
		at    time.Time
		event Event
	}{
		{at(8), UserCreated{ID: 1, Name: "Alice"}},
		{at(9), UserCreated{ID: 2, Name: "Bob"}},
		{at(13), UserDeleted{ID: 1}},
		{at(15), UserRenamed{ID: 2, Name: "Cedric"}},
	}
}

// record is one event as read back from Kafka.
type record struct {
	Partition int32
	Offset    int64
	Time      time.Time
	Event     Event
	Payload   json.RawMessage
}

// observations is what the run read and computed, for the lab's test.
type observations struct {
	trail []record                  // the log, merged by timestamp
	asOf  map[string]map[int]string // moment as printed (10:00) -> users
	end   map[int]string            // users after the whole log
}

// run is the program; runLab also returns what it observed.
func run(ctx context.Context, args []string, out io.Writer) error {
	_, err := runLab(ctx, args, out)
	return err
}

func runLab(ctx context.Context, args []string, out io.Writer) (*observations, error) {
	fs := flag.NewFlagSet("12-event-sourcing", flag.ContinueOnError)
	brokerList := fs.String("brokers", "", "Kafka bootstrap brokers, comma-separated (default $KAFKA_BROKERS, else "+defaultBrokers+")")
	topic := fs.String("topic", "lab12.users", "name of the topic that holds the user events; recreated at the start and deleted at the end, unless -keep or -replay-only")
	asOfList := fs.String("as-of", "10:00,14:00", "moments to rebuild the state at: HH:MM on "+day.Format(time.DateOnly)+" (UTC) or RFC 3339, comma-separated")
	keep := fs.Bool("keep", false, "keep the topic at the end instead of deleting it, for a later -replay-only run")
	replayOnly := fs.Bool("replay-only", false, "do not write: rebuild the state from the events already on the topic")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q; see -h", fs.Args())
	}
	// The environment supplies the brokers unless -brokers does.
	if *brokerList == "" {
		*brokerList = labkit.EnvOr("KAFKA_BROKERS", defaultBrokers)
	}
	brokers := labkit.SplitBrokers(*brokerList)
	if len(brokers) == 0 {
		return nil, errors.New("no Kafka broker given: pass -brokers host:port or set KAFKA_BROKERS")
	}
	// Check the topic name before connecting: Kafka refuses an empty name
	// or a bad one only at the first request, with "invalid topic".
	if err := labkit.CheckTopic(*topic, "lab12.users", true); err != nil {
		return nil, err
	}
	moments, err := parseMoments(*asOfList)
	if err != nil {
		return nil, err
	}

	// Connect.
	client, err := labkit.ConnectKafka(ctx, brokers, newConfig())
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

	// Whatever happens below (Ctrl-C included), the topic goes at the end,
	// unless it is to be kept or is not this run's.
	finished := false
	defer func() {
		if finished || *keep || *replayOnly {
			return
		}
		if err := admin.DeleteTopic(*topic); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			slog.Warn("the run stopped early and could not delete its topic; the next run deletes it first", "topic", *topic, "err", err)
		}
	}()

	if !*replayOnly {
		// Declare the log. A fresh topic each run, so offsets start at 0 and
		// a second run prints the same lines.
		if err := recreateTopic(ctx, admin, *topic); err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "topic %s: %d partitions, key = user ID, CreateTime timestamps, unlimited retention\n", *topic, partitions)

		// Append the events, each with the time it happened.
		if err := appendHistory(client, *topic); err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "appended %d events of %s (UTC)\n", len(history()), day.Format(time.DateOnly))
	}

	// Replay: everything below comes from what Kafka returns, not from
	// history(). Read every partition from its oldest offset to its end.
	perPartition, err := readLog(ctx, client, *topic)
	if err != nil {
		return nil, err
	}
	trail := mergeByTime(perPartition)
	fmt.Fprintf(out, "read back %d events from the oldest offset of %d partitions, merged by timestamp\n", len(trail), len(perPartition))

	// Observe the audit trail: every change, when, and where it is stored.
	fmt.Fprintln(out, "audit trail:")
	for _, r := range trail {
		fmt.Fprintf(out, "  %s  partition %d offset %d  %s %s\n", clock(r.Time), r.Partition, r.Offset, r.Event.EventName(), r.Payload)
	}

	// Rebuild the state as of each moment: apply only what had happened by
	// then (stateAsOf and projection.apply are this lab's exercise:
	// solution.go; the template is exercise.go). The end state is the
	// whole log.
	obs := &observations{trail: trail, asOf: map[string]map[int]string{}}
	for _, m := range moments {
		state, err := stateAsOf(trail, m)
		if err != nil {
			return nil, err
		}
		obs.asOf[clock(m)] = state.users
		fmt.Fprintf(out, "state as of %s: %s\n", clock(m), formatUsers(state.users))
	}
	state := newProjection()
	if _, err := state.applyAll(trail); err != nil {
		return nil, err
	}
	obs.end = maps.Clone(state.users)
	fmt.Fprintf(out, "state at the end: %s\n", formatUsers(state.users))

	// Replay again into the same read model, as a service does when it
	// restarts with its state intact. The projection remembers the next
	// offset of each partition it applied, so nothing is applied twice.
	applied, err := state.applyAll(trail)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "replayed again, skipping applied offsets: %d applied, %d skipped: %s, %d users ever created\n",
		applied, len(trail)-applied, formatUsers(state.users), state.created)
	// Pitfall: the same replay without that check. Setting a name is
	// idempotent, counting is not.
	state.next = map[int32]int64{}
	if applied, err = state.applyAll(trail); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "replayed again, applying everything: %d applied: %s, %d users ever created (wrong)\n",
		applied, formatUsers(state.users), state.created)

	// Clean up.
	finished = true
	if *keep || *replayOnly {
		fmt.Fprintf(out, "kept topic %s\n", *topic)
		return obs, nil
	}
	if err := admin.DeleteTopic(*topic); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return obs, fmt.Errorf("deleting topic %s: %w", *topic, err)
	}
	fmt.Fprintf(out, "deleted topic %s\n", *topic)
	return obs, nil
}

// newConfig is the client configuration of this lab.
func newConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0 // say which protocol to speak; record timestamps need >= 0.10
	cfg.ClientID = "myevents-12-event-sourcing"
	cfg.Net.DialTimeout = 3 * time.Second
	cfg.Metadata.Retry.Max = 1 // give up soon when no broker answers
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	// The replay stops at the end of each partition, and closing a
	// partition consumer waits for the fetch in flight, which the broker
	// holds open for up to MaxWaitTime when there is nothing new. Keep it
	// short so that the replay does not wait half a second per partition.
	cfg.Consumer.MaxWaitTime = 50 * time.Millisecond
	return cfg
}

// recreateTopic deletes the topic if a previous run left it, then creates
// it. The topic settings make the log an event store.
func recreateTopic(ctx context.Context, admin sarama.ClusterAdmin, topic string) error {
	if err := admin.DeleteTopic(topic); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return fmt.Errorf("deleting topic %s left by a previous run: %w", topic, err)
	}
	detail := &sarama.TopicDetail{
		NumPartitions:     partitions,
		ReplicationFactor: 1,
		ConfigEntries: map[string]*string{
			// Keep the time each producer gave its record (the time the
			// event happened), not the time the broker appended it.
			"message.timestamp.type": ptr("CreateTime"),
			// Keep events forever: the log is the only copy of the history.
			// With the default 7 days, events of 2024 would be deleted.
			"retention.ms": ptr("-1"),
		},
	}
	deadline := time.Now().Add(readTimeout)
	for {
		err := admin.CreateTopic(topic, detail, false)
		if err == nil {
			return nil
		}
		// Apache Kafka deletes a topic in the background; until it is gone,
		// creating it again answers "already exists".
		if !errors.Is(err, sarama.ErrTopicAlreadyExists) || time.Now().After(deadline) {
			return fmt.Errorf("creating topic %s: %w", topic, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("creating topic %s: %w", topic, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// appendHistory writes each event with its time and key = user ID.
func appendHistory(client sarama.Client, topic string) error {
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		return fmt.Errorf("creating the Kafka producer: %w", err)
	}
	defer producer.Close()
	for _, h := range history() {
		payload, err := json.Marshal(h.event)
		if err != nil {
			return fmt.Errorf("encoding %s: %w", h.event.EventName(), err)
		}
		value, err := json.Marshal(envelope{EventName: h.event.EventName(), Payload: payload})
		if err != nil {
			return fmt.Errorf("encoding %s envelope: %w", h.event.EventName(), err)
		}
		msg := &sarama.ProducerMessage{
			Topic:     topic,
			Key:       sarama.StringEncoder(strconv.Itoa(h.event.UserID())),
			Value:     sarama.ByteEncoder(value),
			Timestamp: h.at, // when it happened, not when we write it
		}
		if _, _, err := producer.SendMessage(msg); err != nil {
			return fmt.Errorf("appending %s to %s: %w", h.event.EventName(), topic, err)
		}
	}
	return nil
}

// readLog reads every partition from its oldest offset (never the literal
// 0: retention may have moved the start) up to the end it had when the
// replay began, and returns the records of each partition in offset order.
func readLog(ctx context.Context, client sarama.Client, topic string) ([][]record, error) {
	parts, err := client.Partitions(topic)
	if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return nil, fmt.Errorf("topic %s does not exist: run the lab once with -keep before -replay-only", topic)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the partitions of %s: %w", topic, err)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return nil, fmt.Errorf("creating the Kafka consumer: %w", err)
	}
	defer consumer.Close()
	deadline := time.NewTimer(readTimeout)
	defer deadline.Stop()

	byPartition := make([][]record, len(parts))
	for i, p := range parts {
		oldest, err := client.GetOffset(topic, p, sarama.OffsetOldest)
		if err != nil {
			return nil, fmt.Errorf("reading the oldest offset of %s/%d: %w", topic, p, err)
		}
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return nil, fmt.Errorf("reading the end offset of %s/%d: %w", topic, p, err)
		}
		if oldest == end {
			continue // nothing stored on this partition
		}
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			return nil, fmt.Errorf("reading %s/%d: %w", topic, p, err)
		}
		for last := int64(-1); last < end-1; {
			select {
			case msg := <-pc.Messages():
				ev, payload, err := decode(msg.Value)
				if err != nil {
					_ = pc.Close()
					return nil, fmt.Errorf("%s/%d offset %d: %w", topic, p, msg.Offset, err)
				}
				byPartition[i] = append(byPartition[i], record{Partition: p, Offset: msg.Offset, Time: msg.Timestamp.UTC(), Event: ev, Payload: payload})
				last = msg.Offset
			case <-deadline.C:
				_ = pc.Close()
				return nil, fmt.Errorf("reading %s/%d: offset %d not reached after %v", topic, p, end-1, readTimeout)
			case <-ctx.Done():
				_ = pc.Close()
				return nil, fmt.Errorf("reading %s/%d: %w", topic, p, ctx.Err())
			}
		}
		if err := pc.Close(); err != nil {
			return nil, fmt.Errorf("closing the reader of %s/%d: %w", topic, p, err)
		}
	}
	return byPartition, nil
}

// mergeByTime interleaves the partitions into one history. Kafka orders a
// partition, not a topic, so across partitions the record timestamps decide;
// within a partition the offset order is kept as it is, even if a producer's
// clock went backwards, because that is the order of one user's events.
func mergeByTime(perPartition [][]record) []record {
	var merged []record
	heads := make([]int, len(perPartition))
	for {
		best := -1
		for i, recs := range perPartition {
			if heads[i] == len(recs) {
				continue
			}
			if best < 0 || recs[heads[i]].Time.Before(perPartition[best][heads[best]].Time) {
				best = i // ties go to the lower partition, for a stable order
			}
		}
		if best < 0 {
			return merged
		}
		merged = append(merged, perPartition[best][heads[best]])
		heads[best]++
	}
}

// projection is the read model rebuilt from the log: the users by ID, a
// count of users ever created, and per partition the next offset to apply.
type projection struct {
	users   map[int]string
	created int
	next    map[int32]int64
}

func newProjection() *projection {
	return &projection{users: map[int]string{}, next: map[int32]int64{}}
}

// applyAll applies the records in order, each unless an earlier replay
// already did, and says how many it applied.
func (p *projection) applyAll(trail []record) (int, error) {
	applied := 0
	for _, r := range trail {
		ok, err := p.apply(r)
		if err != nil {
			return applied, err
		}
		if ok {
			applied++
		}
	}
	return applied, nil
}

// formatUsers prints users sorted by ID: {1: Alice, 2: Bob}.
func formatUsers(users map[int]string) string {
	ids := slices.Sorted(maps.Keys(users))
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("%d: %s", id, users[id])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// parseMoments reads the -as-of list: HH:MM on the lab's day, or RFC 3339.
func parseMoments(list string) ([]time.Time, error) {
	var moments []time.Time
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if t, err := time.Parse("15:04", s); err == nil {
			moments = append(moments, day.Add(time.Duration(t.Hour())*time.Hour+time.Duration(t.Minute())*time.Minute))
			continue
		}
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return nil, fmt.Errorf("parsing -as-of %q: want HH:MM (such as 10:00) or an RFC 3339 time", s)
		}
		moments = append(moments, t.UTC())
	}
	slices.SortStableFunc(moments, func(a, b time.Time) int { return cmp.Compare(a.UnixNano(), b.UnixNano()) })
	return moments, nil
}

// clock prints a time as HH:MM when it is on the lab's day, else in full.
func clock(t time.Time) string {
	if t.UTC().Truncate(24 * time.Hour).Equal(day) {
		return t.UTC().Format("15:04")
	}
	return t.UTC().Format(time.RFC3339)
}

func ptr(s string) *string { return &s }
