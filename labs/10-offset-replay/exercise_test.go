package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labkit"
)

// TestExerciseSelfStoredResumesExactly checks the lab's exercise,
// runSelfStored, against the broker: run 1 stops after 3 records of each
// partition, run 2 resumes from the checkpoint and reads the rest, run 3
// finds nothing left. Over the runs every record on the broker is
// processed exactly once, and the checkpoint holds the next offsets and
// the state together.
func TestExerciseSelfStoredResumesExactly(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	client, admin := ownClient(t, kafka.Brokers)
	topic := newTopic(t, client, admin)
	want, seats := produce(t, client, topic, map[int32]int{0: 5, 1: 11})
	end, err := endOffsets(client, topic)
	if err != nil {
		t.Fatal(err)
	}
	const stop = 3
	path := filepath.Join(t.TempDir(), "checkpoint.json")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	run1, err := runSelfStored(ctx, client, topic, path, stopOffsets(end, stop))
	if errors.Is(err, labkit.ErrTODO) {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatalf("run 1: %v", err)
	}
	if w := map[int32]int64{0: sarama.OffsetOldest, 1: sarama.OffsetOldest}; !maps.Equal(run1.startedAt, w) {
		t.Errorf("run 1, a first start, started at %s; want %s: with nothing stored, start at sarama.OffsetOldest", startOffsets(run1.startedAt), startOffsets(w))
	}
	cp, err := loadCheckpoint(path)
	if err != nil {
		t.Fatalf("after run 1: %v", err)
	}
	if w := map[int32]int64{0: stop, 1: stop}; !maps.Equal(cp.Next, w) {
		t.Errorf("after run 1 processed offsets 0 to %d of each partition, the checkpoint says to resume at %s; want %s, the offset after the last record processed",
			stop-1, startOffsets(cp.Next), startOffsets(w))
	}
	if !maps.Equal(cp.Seats, run1.state) {
		t.Errorf("after run 1 the checkpoint holds the state %v, but run 1 built %v: save the state with the position", cp.Seats, run1.state)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "*.tmp")); len(leftovers) != 0 {
		t.Errorf("temporary files left beside the checkpoint: %v", leftovers)
	}

	run2, err := runSelfStored(ctx, client, topic, path, end)
	if err != nil {
		t.Fatalf("run 2: %v", err)
	}
	if w := map[int32]int64{0: stop, 1: stop}; !maps.Equal(run2.startedAt, w) {
		t.Errorf("run 2 resumed at %s; want %s, the checkpoint's next offsets", startOffsets(run2.startedAt), startOffsets(w))
	}
	exactlyOnce(t, want, map[string]records{"run 1": run1.records, "run 2": run2.records})
	replayed, err := replay(ctx, client, topic)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(run2.state, replayed.state) || !maps.Equal(run2.state, seats) {
		t.Errorf("the resumed state is %v; a replay of the topic gives %v, and the test produced %v", run2.state, replayed.state, seats)
	}

	run3, err := runSelfStored(ctx, client, topic, path, end)
	if err != nil {
		t.Fatalf("run 3: %v", err)
	}
	if len(run3.records) != 0 || !maps.Equal(run3.startedAt, end) {
		t.Errorf("run 3, with nothing new on the topic, started at %s (the end is %s) and processed %v; want nothing", startOffsets(run3.startedAt), startOffsets(end), ids(run3.records))
	}
}

// TestExerciseSelfStoredSavesAfterEveryRecord checks the checkpoint while
// the run is still going: runSelfStored processes partition 0 offsets 0 to
// 2 and then waits for offset 3, which does not exist yet. By then the
// checkpoint must hold next offset 3 and the seats of offsets 0 to 2 (a
// run that saves only when it returns has saved nothing); the test then
// stops it, as a crash would. Next, a record that does not decode lands at
// offset 3: a run resumed from the checkpoint must fail there and leave
// the checkpoint as it was, and a second run must fail at the same record,
// not skip it.
func TestExerciseSelfStoredSavesAfterEveryRecord(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	client, admin := ownClient(t, kafka.Brokers)
	topic := newTopic(t, client, admin)
	_, want := produce(t, client, topic, map[int32]int{0: 3})
	path := filepath.Join(t.TempDir(), "checkpoint.json")

	// Run until offset 5 of partition 0, two records beyond the end, and
	// watch the checkpoint while the run waits for them.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type outcome struct {
		res result
		err error
	}
	done := make(chan outcome, 1)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		res, err := runSelfStored(ctx, client, topic, path, map[int32]int64{0: 5, 1: 0})
		done <- outcome{res, err}
	}()
	// Stop the run before the test ends, so that it writes nothing into
	// the removed directory.
	t.Cleanup(func() {
		cancel()
		<-stopped
	})
	var ended *outcome
	brokertest.Eventually(t, 10*time.Second, func() error {
		select {
		case o := <-done:
			ended = &o
			return nil
		default:
		}
		cp, err := loadCheckpoint(path)
		held := "nothing"
		switch {
		case err != nil:
			held = err.Error()
		case len(cp.Next) > 0:
			held = fmt.Sprintf("next offsets %s and seats %v", startOffsets(cp.Next), cp.Seats)
		}
		if err != nil || cp.Next[0] != 3 || !maps.Equal(cp.Seats, want) {
			return fmt.Errorf("runSelfStored processed partition 0 offsets 0 to 2 and is waiting for offset 3, but the checkpoint holds %s; want p0=3 and %v: save after every record, not only when the run returns, so that a crash loses nothing processed",
				held, want)
		}
		return nil
	})
	if ended != nil {
		if errors.Is(ended.err, labkit.ErrTODO) {
			t.Fatal(ended.err)
		}
		t.Fatalf("runSelfStored returned (processed %v, error %v) before the records up to offset 5 of partition 0 arrived; it must wait for them until the context ends", ids(ended.res.records), ended.err)
	}
	cancel()
	if o := <-done; o.err == nil {
		t.Errorf("runSelfStored returned no error when its context was cancelled before offset 5 of partition 0 arrived")
	}

	// A record that does not decode at offset 3: the run resumes there and
	// fails, and leaves the checkpoint at p0=3.
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	if _, off, err := producer.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: 0, Value: sarama.StringEncoder("not an envelope")}); err != nil || off != 3 {
		t.Fatalf("producing the broken record: offset %d, %v", off, err)
	}
	end, err := endOffsets(client, topic)
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	for _, attempt := range []string{"the resumed run", "a second run"} {
		res, err := runSelfStored(ctx2, client, topic, path, end)
		if err == nil {
			t.Fatalf("%s processed %v and returned no error; the record at partition 0 offset 3 does not decode, and apply's error must stop the run", attempt, ids(res.records))
		}
		cp, loadErr := loadCheckpoint(path)
		if loadErr != nil {
			t.Fatal(loadErr)
		}
		if cp.Next[0] != 3 || !maps.Equal(cp.Seats, want) {
			t.Fatalf("%s stopped at partition 0 offset 3 (%v); the checkpoint then held next offsets %s and seats %v, want p0=3 and %v: save a record's position only with its effect, after apply succeeded",
				attempt, err, startOffsets(cp.Next), cp.Seats, want)
		}
	}
}

// TestExerciseSelfStoredFirstStartAtTheOldestOffset removes the start of
// partition 0 (DeleteRecords below 4, as retention would) before the first
// run: with no checkpoint, the consumer must start where the log starts
// now, not at offset 0, which the broker no longer has.
func TestExerciseSelfStoredFirstStartAtTheOldestOffset(t *testing.T) {
	t.Parallel()
	kafka := brokertest.Kafka(t)
	client, admin := ownClient(t, kafka.Brokers)
	topic := newTopic(t, client, admin)
	want, _ := produce(t, client, topic, map[int32]int{0: 6, 1: 2})
	const cut = 4
	if err := admin.DeleteRecords(topic, map[int32]int64{0: cut}); err != nil {
		t.Fatalf("DeleteRecords: %v", err)
	}
	end, err := endOffsets(client, topic)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := runSelfStored(ctx, client, topic, filepath.Join(t.TempDir(), "checkpoint.json"), end)
	if errors.Is(err, labkit.ErrTODO) {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatalf("a first start after DeleteRecords below offset %d of partition 0: %v; with nothing stored, start at sarama.OffsetOldest, never the literal offset 0", cut, err)
	}
	var left []string
	for id, r := range want {
		if r.partition != 0 || r.offset >= cut {
			left = append(left, id)
		}
	}
	brokertest.CheckIDs(t, "records processed on a first start", ids(res.records), left)
}

// exactlyOnce reports every record the test produced that the runs
// processed more than once or not at all, by partition and offset.
func exactlyOnce(t *testing.T, produced produced, runs map[string]records) {
	t.Helper()
	seenBy := map[string][]string{}
	for _, name := range slices.Sorted(maps.Keys(runs)) {
		for _, r := range runs[name] {
			seenBy[r.id] = append(seenBy[r.id], name)
		}
	}
	var problems []string
	for _, id := range slices.Sorted(maps.Keys(produced)) {
		r := produced[id]
		switch by := seenBy[id]; {
		case len(by) == 0:
			problems = append(problems, fmt.Sprintf("partition %d offset %d (%s) was never processed", r.partition, r.offset, id))
		case len(by) > 1:
			problems = append(problems, fmt.Sprintf("partition %d offset %d (%s) was processed %d times (%s)", r.partition, r.offset, id, len(by), strings.Join(by, ", ")))
		}
	}
	if len(problems) > 0 {
		if len(problems) > 6 {
			problems = append(problems[:6], fmt.Sprintf("... (%d in all)", len(problems)))
		}
		t.Errorf("every record must be processed exactly once over the runs:\n  %s", strings.Join(problems, "\n  "))
	}
}
