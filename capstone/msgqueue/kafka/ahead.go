package kafka

import (
	"context"

	"github.com/IBM/sarama"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
)

// decoded is a record and what decoding it gave, ready for worker.finish.
type decoded struct {
	msg  *sarama.ConsumerMessage
	name string          // the envelope's eventName, when it had one
	ev   contracts.Event // nil when err is set
	err  error           // the value is too large, or does not decode
	big  bool            // err is msgqueue.CheckSize's
}

// decode checks the size of msg and unwraps its value. It has no side
// effect, so a record may be decoded before the one ahead of it is handled.
func decode(msg *sarama.ConsumerMessage) decoded {
	if err := msgqueue.CheckSize(recordSize(msg)); err != nil {
		return decoded{msg: msg, err: err, big: true}
	}
	name, ev, err := contracts.Unwrap(msg.Value)
	return decoded{msg: msg, name: name, ev: ev, err: err}
}

// recordSize is what msgqueue.MaxMessageSize bounds: the record's key,
// value and headers together. A valid event with a key or headers of
// hundreds of kilobytes is as much over the limit as one with such a
// value.
func recordSize(msg *sarama.ConsumerMessage) int {
	n := len(msg.Key) + len(msg.Value)
	for _, h := range msg.Headers {
		if h != nil {
			n += len(h.Key) + len(h.Value)
		}
	}
	return n
}

// aheadRun is the most records decodeAhead decodes into one run, and
// aheadRuns how many runs may wait for the handler. With the run being
// filled and the one being handled, a partition holds at most
// (aheadRuns+2)*aheadRun decoded records (1,024), each with its record's
// value, beside sarama's own buffer (ChannelBufferSize: 256, and
// replayReadAhead in a replay).
const (
	aheadRun  = 256
	aheadRuns = 2
)

// ahead is a partition's decoding goroutine (decodeAhead): runs of
// decoded records come out of runs in order, and go back with done once
// finished, to be filled again instead of allocated. stop ends it.
type ahead struct {
	runs   <-chan []decoded
	free   chan []decoded
	cancel context.CancelFunc
}

// stop ends the decoding goroutine and waits for it.
func (a ahead) stop() {
	a.cancel()
	for range a.runs {
	}
}

// done hands a finished run back.
func (a ahead) done(run []decoded) {
	clear(run) // let the records go
	select {
	case a.free <- run[:0]:
	default:
	}
}

// decodeAhead decodes the records of msgs on a goroutine of its own while
// the caller handles the ones before them, so that on a machine with a
// second core decoding a partition's records does not wait for handling
// them, nor handling for decoding. It hands them on in order, in runs: a
// record with every record that had arrived behind it, up to aheadRun.
// Its runs channel is closed when ctx ends, stop is called or msgs is
// closed; the caller calls stop before it returns.
func decodeAhead(ctx context.Context, msgs <-chan *sarama.ConsumerMessage) ahead {
	ctx, cancel := context.WithCancel(ctx)
	out := make(chan []decoded, aheadRuns)
	a := ahead{runs: out, free: make(chan []decoded, aheadRuns+1), cancel: cancel}
	go func() {
		defer close(out)
		for ctx.Err() == nil { // select picks at random once ctx ended too
			var msg *sarama.ConsumerMessage
			var ok bool
			select {
			case <-ctx.Done():
				return
			case msg, ok = <-msgs:
				if !ok {
					return
				}
			}
			var run []decoded
			select {
			case run = <-a.free:
			default:
				run = make([]decoded, 0, aheadRun)
			}
			run = append(run, decode(msg))
		more:
			for len(run) < aheadRun {
				select {
				case msg, ok = <-msgs:
					if !ok {
						break more
					}
					run = append(run, decode(msg))
				default:
					break more
				}
			}
			select {
			case <-ctx.Done():
				return
			case out <- run:
			}
			if !ok {
				return
			}
		}
	}()
	return a
}
