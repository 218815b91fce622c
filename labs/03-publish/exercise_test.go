package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labkit"
)

// TestExercisePublishMandatory checks the lab's exercise, publishMandatory,
// against the real broker. It publishes five messages to an exchange with
// two queues: one open, one full that rejects new messages. Each message
// meets a different fate, and the test compares what publishMandatory
// reports with what the queues hold. Then an unroutable message goes first,
// before thousands of routed ones, on a connection that lets the second
// one out only once the first one's return is in, so a NotifyReturn
// registered after publishing misses it every time. Last, publishMandatory must close its
// channel: three calls on a connection that allows one channel at a time.
func TestExercisePublishMandatory(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	conn, err := amqp.Dial(rabbit.URL)
	if err != nil {
		t.Fatalf("dialing the broker: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("opening a channel: %v", err)
	}

	// The topology: open gets ok.*, full gets full.* but holds at most one
	// message and rejects the next (the broker nacks it). Nothing is bound
	// for any other key. The queues are exclusive to this connection, and
	// the auto-delete exchange goes with them.
	exchange := brokertest.Name(t, "events")
	if err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic,
		false, // durable
		true,  // auto-delete
		false, // internal
		false, // no-wait
		nil,   // args
	); err != nil {
		t.Fatalf("declaring exchange %s: %v", exchange, err)
	}
	open, full := brokertest.Name(t, "open"), brokertest.Name(t, "full")
	for _, q := range []struct {
		name, pattern string
		args          amqp.Table
	}{
		{open, "ok.*", nil},
		{full, "full.*", amqp.Table{"x-max-length": int32(1), "x-overflow": "reject-publish"}},
	} {
		if _, err := ch.QueueDeclare(q.name,
			false, // durable
			true,  // auto-delete
			true,  // exclusive
			false, // no-wait
			q.args,
		); err != nil {
			t.Fatalf("declaring queue %s: %v", q.name, err)
		}
		if err := ch.QueueBind(q.name, q.pattern, exchange, false /* no-wait */, nil); err != nil {
			t.Fatalf("binding queue %s with %s: %v", q.name, q.pattern, err)
		}
	}

	// The messages and what the broker does with each.
	const (
		routed = "routed: acked and not returned"
		back   = "returned and acked"
		nacked = "nacked and not returned"
	)
	cases := []struct {
		id, key, want, why string
	}{
		{"ok-1", "ok.1", routed, "queue " + open + " is bound for ok.*"},
		{"typo-1", "okk.1", back, "no queue is bound for its key okk.1, so with mandatory set the broker returns it (312 NO_ROUTE), and acks it"},
		{"full-1", "full.1", routed, "queue " + full + " is bound for full.* and still empty"},
		{"full-2", "full.2", nacked, "queue " + full + " is full (x-max-length 1, x-overflow reject-publish), so the broker nacks it; it was routed, so it is not returned"},
		{"ok-2", "ok.2", routed, "queue " + open + " is bound for ok.*"},
	}
	// likelyCause names the usual mistake behind a wrong fate, for the
	// failure message: the broker's verdict alone does not say which line
	// to look at.
	likelyCause := func(want, got string) string {
		switch {
		case want == back && got == routed:
			return " (no return reached publishMandatory: publish with mandatory set, register NotifyReturn before publishing, and give its Go channel room for every return; with no room the library waits 5 s, then drops the return, so a test that paused about 5 s points there)"
		case want == nacked && got == routed:
			return " (take acked from the confirmation: WaitContext returns false for a nack)"
		}
		return ""
	}
	msgs := make([]outgoing, len(cases))
	for i, c := range cases {
		msgs[i] = outgoing{key: c.key, msg: amqp.Publishing{
			ContentType: "text/plain",
			MessageId:   c.id,
			Body:        []byte("message " + c.id),
		}}
	}

	fates, err := publishWithin(t, conn, exchange, msgs)
	if errors.Is(err, labkit.ErrTODO) {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatalf("publishMandatory: %v", err)
	}

	// What the queues hold: the broker's side of the story.
	brokertest.CheckIDs(t, "queue "+open+" (bound for ok.*)", getAll(t, ch, open), []string{"ok-1", "ok-2"})
	brokertest.CheckIDs(t, "queue "+full+" (bound for full.*, at most 1 message)", getAll(t, ch, full), []string{"full-1"})

	// What publishMandatory reports.
	if len(fates) != len(cases) {
		t.Fatalf("publishMandatory reported %d fates for %d messages: want one per message, in the order given: %+v", len(fates), len(cases), fates)
	}
	for i, c := range cases {
		f := fates[i]
		if f.id != c.id {
			t.Errorf("fate %d is for message %q, want %q: report the fates in the order of the messages, with their MessageId", i, f.id, c.id)
			continue
		}
		got := fmt.Sprintf("acked=%t returned=%t", f.acked, f.returned)
		switch {
		case f.acked && !f.returned:
			got = routed
		case f.acked && f.returned:
			got = back
		case !f.acked && !f.returned:
			got = nacked
		}
		if got != c.want {
			t.Errorf("%s (routing key %s): publishMandatory reports %s; want %s, because %s%s", c.id, c.key, got, c.want, c.why, likelyCause(c.want, got))
		}
		if c.want == back && f.returned && !strings.Contains(f.reason, "NO_ROUTE") {
			t.Errorf("%s was returned with reason %q; want the broker's reply code and text, 312 NO_ROUTE", c.id, f.reason)
		}
		if !f.returned && f.reason != "" {
			t.Errorf("%s was not returned, but its reason is %q; want empty", c.id, f.reason)
		}
	}
	if t.Failed() {
		return
	}

	// An unroutable message first, then thousands of routed ones, on a
	// connection that holds the second publish back until the client has
	// taken in the first one's return (returnGate): a NotifyReturn
	// registered only after publishing never sees it, every time.
	const many = 3000
	msgs = []outgoing{{key: "okk.first", msg: amqp.Publishing{MessageId: "typo-first", Body: []byte("unroutable")}}}
	for i := range many {
		id := fmt.Sprintf("ok-many-%d", i)
		msgs = append(msgs, outgoing{key: "ok.many", msg: amqp.Publishing{MessageId: id, Body: []byte(id)}})
	}
	gated, gate := dialReturnGate(t, rabbit.URL)
	fates, err = publishWithin(t, gated, exchange, msgs)
	if err != nil {
		t.Fatalf("publishMandatory with %d messages: %v", len(msgs), err)
	}
	if len(fates) != len(msgs) {
		t.Fatalf("publishMandatory reported %d fates for %d messages: want one per message, in the order given", len(fates), len(msgs))
	}
	if !gate.held() {
		t.Fatalf("the test's connection did not hold the second publish back until the first one's return was in: publish the messages in the order given, with mandatory set")
	}
	if f := fates[0]; f.id != "typo-first" || !f.acked || !f.returned {
		t.Errorf("typo-first (routing key okk.first), published first and followed by %d routed messages: publishMandatory reports %+v; want %s: register NotifyReturn before publishing anything; a return that arrives before it is registered is dropped (this test's connection lets the second message out only once the first one's return has arrived)", many, f, back)
	}
	var wrong []string
	for _, f := range fates[1:] {
		if !f.acked || f.returned {
			wrong = append(wrong, f.id)
		}
	}
	if len(wrong) > 0 {
		t.Errorf("%d of the %d messages routed to queue %s are not reported %s, first %s", len(wrong), many, open, routed, wrong[0])
	}
	if n, err := ch.QueuePurge(open, false /* no-wait */); err != nil {
		t.Errorf("purging queue %s: %v", open, err)
	} else if n != many {
		t.Errorf("queue %s held %d messages; want the %d routed ones", open, n, many)
	}

	// Three calls in a row on a connection that allows one channel at a
	// time: each call must close the channel it opened before it returns,
	// or the next one cannot open its own.
	one, err := amqp.DialConfig(rabbit.URL, amqp.Config{ChannelMax: 1})
	if err != nil {
		t.Fatalf("dialing the broker with one channel at most: %v", err)
	}
	t.Cleanup(func() { _ = one.Close() })
	for i := range 3 {
		id := fmt.Sprintf("ok-again-%d", i+1)
		fates, err := publishWithin(t, one, exchange, []outgoing{{key: "ok.again", msg: amqp.Publishing{MessageId: id, Body: []byte(id)}}})
		if err != nil {
			t.Fatalf("call %d of publishMandatory on a connection that allows one channel at a time: %v; close the channel publishMandatory opens before it returns (defer ch.Close())", i+1, err)
		}
		if len(fates) != 1 || fates[0].id != id || !fates[0].acked || fates[0].returned {
			t.Errorf("call %d of publishMandatory reports %+v; want %s routed", i+1, fates, id)
		}
	}
	brokertest.CheckIDs(t, "queue "+open+" (bound for ok.*)", getAll(t, ch, open), []string{"ok-again-1", "ok-again-2", "ok-again-3"})
}

// publishWithin runs publishMandatory under a timeout in a goroutine of its
// own and returns what it returned. If it has not returned five seconds
// after its deadline, it never will, and the test stops and says why.
func publishWithin(t *testing.T, conn *amqp.Connection, exchange string, msgs []outgoing) ([]fate, error) {
	t.Helper()
	const timeout = 10 * time.Second
	type result struct {
		fates []fate
		err   error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		fates, err := publishMandatory(ctx, conn, exchange, msgs)
		done <- result{fates, err}
	}()
	select {
	case r := <-done:
		return r.fates, r.err
	case <-time.After(timeout + 5*time.Second):
		t.Fatalf("publishMandatory with %d messages has not returned 5 s after its context's deadline of %v: once every confirm is in, take the returns already waiting and return; don't range over the returns channel, it only closes with the channel (use a select with a default case)", len(msgs), timeout)
		return nil, nil
	}
}

// getAll takes every message from a queue and returns their message IDs.
func getAll(t *testing.T, ch *amqp.Channel, queue string) []string {
	t.Helper()
	var ids []string
	for {
		d, ok, err := ch.Get(queue, true /* auto-ack */)
		if err != nil {
			t.Fatalf("reading queue %s: %v", queue, err)
		}
		if !ok {
			return ids
		}
		ids = append(ids, d.MessageId)
	}
}

// returnGate is a client's connection to the broker that lets the second
// basic.publish out only once the client library has taken in a
// basic.return and the basic.ack after it: the library reads frames in one
// goroutine and hands a return to the NotifyReturn listeners before it
// reads on, so when it comes back for more bytes after the ack, the return
// has been handed to whoever was registered by then. It waits at most
// gateWait, so a publisher that sets no mandatory flag is only slowed.
type returnGate struct {
	net.Conn
	out, in   frameScanner // client to broker, broker to client
	publishes int          // basic.publish frames written so far (Write only)
	returned  bool         // a basic.return has been read (Read only)
	acked     bool         // and a basic.ack after it (Read only)
	open      chan struct{}
	once      sync.Once
	waited    atomic.Bool // the second publish was held back
}

// gateWait bounds how long the gate holds the second publish back.
const gateWait = 5 * time.Second

// dialReturnGate opens a connection through a returnGate, closed when the
// test ends.
func dialReturnGate(t *testing.T, rawURL string) (*amqp.Connection, *returnGate) {
	t.Helper()
	var gate *returnGate
	conn, err := amqp.DialConfig(rawURL, amqp.Config{Dial: func(network, addr string) (net.Conn, error) {
		c, err := amqp.DefaultDial(10*time.Second)(network, addr)
		if err != nil {
			return nil, err
		}
		// The client starts with the 8-byte protocol header, then frames.
		gate = &returnGate{Conn: c, out: frameScanner{skip: 8}, open: make(chan struct{})}
		return gate, nil
	}})
	if err != nil {
		t.Fatalf("dialing the broker: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn, gate
}

// held reports whether the gate held a second publish back for a return.
func (g *returnGate) held() bool { return g.waited.Load() }

func (g *returnGate) Read(p []byte) (int, error) {
	if g.acked {
		// Back for more after the ack: the return before it is handed over.
		g.once.Do(func() { close(g.open) })
	}
	n, err := g.Conn.Read(p)
	g.in.feed(p[:n], nil, func(class, method uint16) {
		switch {
		case class == 60 && method == 50: // basic.return
			g.returned = true
		case class == 60 && method == 80 && g.returned: // basic.ack
			g.acked = true
		}
	})
	return n, err
}

func (g *returnGate) Write(p []byte) (int, error) {
	hold := -1 // where the second basic.publish starts in p
	g.out.feed(p, func(class, method uint16, start int) {
		if class == 60 && method == 40 { // basic.publish
			g.publishes++
			if g.publishes == 2 {
				hold = max(start, 0)
			}
		}
	}, nil)
	if hold < 0 {
		return g.Conn.Write(p)
	}
	n, err := g.Conn.Write(p[:hold])
	if err != nil {
		return n, err
	}
	select {
	case <-g.open:
		g.waited.Store(true)
	case <-time.After(gateWait):
	}
	m, err := g.Conn.Write(p[hold:])
	return n + m, err
}

// frameScanner follows a stream of AMQP 0-9-1 frames (type, channel,
// size, payload, frame-end) across the chunks it is fed, and reports each
// frame's class and method ids (0 for a frame that is not a method frame):
// to head as soon as they are in, with the offset in the chunk where the
// frame began (negative: in an earlier chunk), and to end once the whole
// frame is.
type frameScanner struct {
	skip  int    // bytes to pass over before the first frame
	head  []byte // the current frame's first bytes, up to 11
	left  int    // bytes of the current frame still to come after head
	start int    // where the current frame began in the current chunk
	class uint16 // the current frame's class and method ids
	meth  uint16
}

func (s *frameScanner) feed(p []byte, head func(class, method uint16, start int), end func(class, method uint16)) {
	for i := 0; i < len(p); {
		switch {
		case s.skip > 0:
			n := min(s.skip, len(p)-i)
			s.skip -= n
			i += n
			continue
		case s.left > 0:
			n := min(s.left, len(p)-i)
			s.left -= n
			i += n
			if s.left == 0 && end != nil {
				end(s.class, s.meth)
			}
			continue
		}
		if len(s.head) == 0 {
			s.start = i
		}
		want := 7 // type, channel, size
		if len(s.head) >= 7 {
			want = min(11, 8+int(binary.BigEndian.Uint32(s.head[3:7])))
		}
		n := min(want-len(s.head), len(p)-i)
		s.head = append(s.head, p[i:i+n]...)
		i += n
		if len(s.head) < 7 {
			continue
		}
		total := 8 + int(binary.BigEndian.Uint32(s.head[3:7]))
		if len(s.head) < min(11, total) {
			continue
		}
		s.class, s.meth = 0, 0
		if s.head[0] == 1 && total >= 12 { // a method frame
			s.class = binary.BigEndian.Uint16(s.head[7:9])
			s.meth = binary.BigEndian.Uint16(s.head[9:11])
		}
		if head != nil {
			head(s.class, s.meth, s.start)
		}
		s.left = total - len(s.head)
		s.head = s.head[:0]
		if s.left == 0 && end != nil {
			end(s.class, s.meth)
		}
	}
	s.start -= len(p) // a frame begun here goes on in the next chunk
}
