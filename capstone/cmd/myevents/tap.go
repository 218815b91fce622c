package main

import (
	"fmt"
	"sync"

	"example.com/myevents/capstone/cmd/myevents/live"
)

// record is one event as it sits in the Kafka log.
type record struct {
	Name      string // the envelope's eventName
	Key       string // the record key: the event's partition key
	Partition int32
	Offset    int64
}

// String is how the demo shows a record.
func (r record) String() string {
	return fmt.Sprintf("   kafka: %-16s  key=%s  partition=%d offset=%d", r.Name, r.Key, r.Partition, r.Offset)
}

// tap hands the story the records of the events topic that the live
// view's Kafka watcher reads (a plain consumer of its own beside the
// services, which belongs to no group and commits nothing), so the demo
// shows what really reached the broker: which partition the key chose,
// and at which offset the record was stored.
type tap struct {
	records chan record
	mu      sync.Mutex
	closed  bool
}

func newTap() *tap { return &tap{records: make(chan record, 64)} }

// add is the watcher's sink for the events topic. It blocks while the
// story has not read the records before; after close it drops them.
func (t *tap) add(r live.Record) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.records <- record{Name: r.Name, Key: r.Key, Partition: r.Partition, Offset: r.Offset}
}

// close ends records; calling it again does nothing. A sink blocked in
// add holds the lock, so the records still buffered are drained first.
func (t *tap) close() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range t.records {
		}
	}()
	t.mu.Lock()
	if !t.closed {
		t.closed = true
		close(t.records)
	}
	t.mu.Unlock()
	<-done
}
