package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

// A replay reads the stretch of each partition that was in the log when
// it started, [start, target), with fetch requests of its own
// (fetchAhead), and only the records written after that with sarama's
// partition consumer. Below target every transaction is decided, so the
// stretch is read to its end, markers and aborted records included, and
// then the partition is caught up. That is the read a restarted service
// waits for, answering 503, and sarama's consumer makes it slower than it
// needs to be:
//
//   - it gathers partition consumers for 100 ms before its first fetch;
//   - it hands records over one at a time through a channel, where
//     fetchAhead decodes the records of an answer as it parses them.
//
// Anything fetchAhead does not decide itself (an old message format, a
// batch larger than its fetch, an error from the broker) ends it early;
// sarama's consumer goes on from there, with its retries.

// fetchWait is how long the broker may hold a catch-up fetch when it has
// nothing to send, which below the target it always has.
const fetchWait = 100 * time.Millisecond

// fetchEnd is where a fetchAhead stopped, and why, once its runs channel
// is closed.
type fetchEnd struct {
	next int64 // the offset to read from next: target when err is nil
	err  error
}

// fetchAhead reads partition p from offset from up to offset to with
// fetches of its own, on a connection of its own to the partition's
// leader (a fetch that sarama's consumer leaves open on a shared
// connection would hold each of these up to Consumer.MaxWaitTime), and
// decodes each answer's records on a goroutine of its own while the next
// answer is fetched (fetchRange). Its runs come out as
// decodeAhead's do: the records of one answer, up to aheadRun at a time.
// When runs is closed, end says where it stopped.
func (l *Listener) fetchAhead(ctx context.Context, p int32, from, to int64) (ahead, *fetchEnd) {
	ctx, cancel := context.WithCancel(ctx)
	out := make(chan []decoded, aheadRuns)
	a := ahead{runs: out, free: make(chan []decoded, aheadRuns+1), cancel: cancel}
	end := &fetchEnd{next: from}
	go func() {
		defer close(out)
		end.next, end.err = l.fetchRange(ctx, p, from, to, func(run []decoded) ([]decoded, bool) {
			select {
			case <-ctx.Done():
				return nil, false
			case out <- run:
			}
			select {
			case run = <-a.free:
			default:
				run = make([]decoded, 0, aheadRun)
			}
			return run, true
		})
	}()
	return a, end
}

// fetchRange is fetchAhead's loop: it hands runs to send, which returns
// an empty run to fill next, or false when the reader is gone. It returns
// the offset to read from next, to once it got there. The fetches run on
// a goroutine of their own (fetchBlocks), up to two answers ahead of
// the decoding.
func (l *Listener) fetchRange(ctx context.Context, p int32, from, to int64, send func([]decoded) ([]decoded, bool)) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	blocks := l.fetchBlocks(ctx, p, from, to)
	defer func() {
		cancel()
		for range blocks { // let fetchBlocks end and close its connection
		}
	}()
	next := from
	run := make([]decoded, 0, aheadRun)
	for f := range blocks {
		if f.err != nil {
			return next, f.err
		}
		after, err := l.parseBlock(f.block, p, next, to, func(d decoded) bool {
			run = append(run, d)
			if len(run) < aheadRun {
				return true
			}
			var ok bool
			run, ok = send(run)
			return ok
		})
		if errors.Is(err, errReaderGone) {
			return next, ctx.Err()
		}
		if len(run) > 0 { // what arrived together goes on together
			var ok bool
			if run, ok = send(run); !ok {
				return next, ctx.Err()
			}
		}
		if next = after; err != nil {
			return next, err // the records before it were handed on
		}
	}
	if next < to {
		if err := ctx.Err(); err != nil {
			return next, err
		}
		return next, fmt.Errorf("reading Kafka topic %s partition %d: the fetches stopped at offset %d, short of %d", l.opts.topic, p, next, to)
	}
	return to, nil
}

// fetched is one answer of fetchBlocks, or why it stopped.
type fetched struct {
	block *sarama.FetchResponseBlock
	err   error
}

// fetchBlocks fetches partition p from offset from up to offset to, each
// fetch from where the answer before it ended, and hands the answers on
// in order: one waits in the channel while the next is fetched, so up to
// two answers are ahead of the one being decoded. The channel is closed once it got to offset to, after an
// error (the last answer), or when ctx ends.
func (l *Listener) fetchBlocks(ctx context.Context, p int32, from, to int64) <-chan fetched {
	out := make(chan fetched, 1)
	go func() {
		defer close(out)
		failed := func(err error) {
			select {
			case <-ctx.Done():
			case out <- fetched{err: err}:
			}
		}
		topic := l.opts.topic
		cfg := l.client.Config()
		leader, err := l.client.Leader(topic, p)
		if err != nil {
			failed(fmt.Errorf("finding the leader of Kafka topic %s partition %d: %w", topic, p, err))
			return
		}
		conn := sarama.NewBroker(leader.Addr())
		if err := conn.Open(cfg); err != nil {
			failed(fmt.Errorf("connecting to the leader of Kafka topic %s partition %d: %w", topic, p, err))
			return
		}
		defer func() { _ = conn.Close() }()
		for next := from; next < to; {
			req := newFetchRequest(cfg.Version)
			req.AddBlock(topic, p, next, cfg.Consumer.Fetch.Default, -1)
			resp, err := conn.Fetch(req)
			if err != nil {
				failed(fmt.Errorf("reading Kafka topic %s partition %d from offset %d: %w", topic, p, next, err))
				return
			}
			block := resp.GetBlock(topic, p)
			switch {
			case block == nil:
				failed(fmt.Errorf("reading Kafka topic %s partition %d from offset %d: %w", topic, p, next, sarama.ErrIncompleteResponse))
				return
			case !errors.Is(block.Err, sarama.ErrNoError):
				failed(fmt.Errorf("reading Kafka topic %s partition %d from offset %d: %w", topic, p, next, block.Err))
				return
			}
			after := next
			for _, rs := range block.RecordsSet {
				if b := rs.RecordBatch; b != nil && !b.PartialTrailingRecord {
					after = max(after, b.LastOffset()+1)
				}
			}
			select {
			case <-ctx.Done():
				return
			case out <- fetched{block: block}:
			}
			if after == next {
				// A batch larger than the fetch, or an old message
				// format: sarama's consumer knows what to do.
				failed(fmt.Errorf("reading Kafka topic %s partition %d from offset %d: the answer holds no whole batch of the current format", topic, p, next))
				return
			}
			next = after
		}
	}()
	return out
}

// errReaderGone is parseBlock's answer once add said the reader is gone.
var errReaderGone = errors.New("the reader is gone")

// newFetchRequest is a read-committed fetch of the replay's own, in the
// version that the listener's protocol version allows: 10 from Kafka 2.1
// (a topic compressed with zstd is refused below it), otherwise 4, the
// first with read-committed isolation and the aborted transactions in the
// answer, and the oldest Apache Kafka 4 still answers. From version 7 on
// it asks for no fetch session (id 0, epoch -1), as sarama's consumer
// does.
func newFetchRequest(v sarama.KafkaVersion) *sarama.FetchRequest {
	req := &sarama.FetchRequest{Version: 4, MaxWaitTime: int32(fetchWait / time.Millisecond), MinBytes: 1,
		MaxBytes: sarama.MaxResponseSize, Isolation: sarama.ReadCommitted}
	if v.IsAtLeast(sarama.V2_1_0_0) {
		req.Version, req.SessionID, req.SessionEpoch = 10, 0, -1
	}
	return req
}

// parseBlock decodes the records of one fetch answer from offset next up
// to offset to, in order, handing each to add (which returns false when
// the reader is gone), and returns the offset after the last batch it
// read, also with an error about a later one. It leaves out what
// sarama's consumer leaves out with ReadCommitted: transaction markers
// and the records of aborted transactions (aborts decides, as for
// scanTail), and records below next of a batch that starts before it.
func (l *Listener) parseBlock(block *sarama.FetchResponseBlock, p int32, next, to int64, add func(decoded) bool) (int64, error) {
	aborts := newAborts(block)
	interceptors := l.client.Config().Consumer.Interceptors
	for _, rs := range block.RecordsSet {
		b := rs.RecordBatch
		if b == nil {
			return next, fmt.Errorf("reading Kafka topic %s partition %d from offset %d: a message set of the format before Kafka 0.11", l.opts.topic, p, next)
		}
		if b.PartialTrailingRecord {
			break // the rest of it comes with the next fetch
		}
		delivers := aborts.delivers(b)
		if b.LastOffset() < next {
			continue
		}
		if b.FirstOffset >= to {
			return to, nil
		}
		if delivers {
			for _, r := range b.Records {
				off := b.FirstOffset + r.OffsetDelta
				if off < next || off >= to {
					continue
				}
				ts := b.FirstTimestamp.Add(r.TimestampDelta)
				if b.LogAppendTime {
					ts = b.MaxTimestamp
				}
				msg := &sarama.ConsumerMessage{Topic: l.opts.topic, Partition: p, Key: r.Key, Value: r.Value,
					Offset: off, Timestamp: ts, Headers: r.Headers}
				for _, i := range interceptors {
					onConsume(i, msg)
				}
				if !add(decode(msg)) {
					return next, errReaderGone
				}
			}
		}
		next = min(b.LastOffset()+1, to)
	}
	return next, nil
}

// onConsume runs a consumer interceptor set with WithSaramaConfig on msg,
// as sarama's consumer does: one that panics is logged and skipped.
func onConsume(i sarama.ConsumerInterceptor, msg *sarama.ConsumerMessage) {
	defer func() {
		if r := recover(); r != nil {
			sarama.Logger.Printf("Error when calling consumer interceptor: %v, %v", i, r)
		}
	}()
	i.OnConsume(msg)
}
