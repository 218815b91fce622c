package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labkit"
	"example.com/myevents/labs/labtest"
)

func TestMain(m *testing.M) { brokertest.Main(m) }

// docs are the files whose "Expected output" block the program must print.
var docs = []string{"README.md", "../../docs/14-batching.md"}

// testN is the bookings and messages per way the tests use: enough for
// many batches and windows, few enough to stay quick.
const testN = 300

// counts is what rabbitmqctl says about a queue.
type counts struct{ ready, unacked int }

// TestBatching runs the lab and checks each part from the outside, at the
// moment the program reports it: part 1 against the SQLite file, through a
// connection of the test's own; part 2 against the queue, message by
// message; part 3 against the broker's counts just before each consumer's
// last commit, then the database and the dead-letter queue. Then it checks
// that the lab deleted what it made, and its output against the docs.
func TestBatching(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	exchange := brokertest.Name(t, "events")
	queue := brokertest.Name(t, "lab14")
	dir := t.TempDir()
	deleteAfter(t, rabbit.URL, exchange, queue)

	var (
		mu       sync.Mutex
		steps    []string
		atCommit = map[string]counts{} // the broker's counts before each way's last commit
		noCtl    error
	)
	observe := func(step string, r report) {
		mu.Lock()
		steps = append(steps, step)
		mu.Unlock()
		switch step {
		case stepStored:
			checkBookings(t, r)
		case stepPublished:
			checkPublished(t, rabbit.URL, queue, r.ids)
		case stepBeforeCommit:
			if !r.last || noCtl != nil {
				return
			}
			way := "drain-each"
			if strings.HasPrefix(r.ids[0], "drain-window") {
				way = "drain-window"
			}
			// Nothing of this transaction may be acked yet, and nothing
			// else may be left: the broker must count exactly its
			// deliveries as unacked. (An ack sent before the commit would
			// show as fewer; the poll gives the broker time to count
			// acks sent earlier.)
			got, err := waitCounts(rabbit, queue, counts{ready: 0, unacked: len(r.ids)})
			if errors.Is(err, brokertest.ErrNoCtl) {
				noCtl = err
				return
			}
			atCommit[way] = got
			if err != nil {
				t.Errorf("%s: before the commit of its last transaction (%d deliveries) the broker counted %d ready, %d unacked: %v; want 0 ready and %d unacked: nothing acked before its commit",
					way, len(r.ids), got.ready, got.unacked, err, len(r.ids))
			}
		case stepDrained:
			checkDrained(t, rabbit, queue, r.dbPath)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	args := []string{"-url", rabbit.URL, "-exchange", exchange, "-queue", queue, "-n", strconv.Itoa(testN), "-dir", dir}
	if err := runProbed(ctx, args, &out, observe); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())

	for _, step := range []string{stepStored, stepPublished, stepBeforeCommit, stepDrained} {
		if !strings.Contains(strings.Join(steps, "\n"), step) {
			t.Errorf("the program never reported step %q", step)
		}
	}
	switch {
	case noCtl != nil:
		t.Logf("rabbitmqctl is not available, so the unacked counts before the last commits are not checked: %v", noCtl)
	case len(atCommit) != 2:
		t.Errorf("the broker's counts were taken before the last commit of %d ways, want 2: %v", len(atCommit), atCommit)
	}

	// Everything the lab made is gone: the queues, the exchanges, the
	// SQLite database and its directory.
	checkGone(t, rabbit.URL, exchange, queue)
	if left, _ := os.ReadDir(dir); len(left) > 0 {
		t.Errorf("the lab left %d entries in -dir (%s): want its directory deleted", len(left), left[0].Name())
	}

	labtest.CheckOutput(t, out.String(), docs,
		brokertest.Redact(rabbit.URL), brokertest.Redact(brokertest.DefaultAMQPURL),
		exchange, "lab14.events",
		queue, "lab14.bookings")
}

// checkBookings opens the SQLite file with a connection of the test's own
// and checks both concerts of part 1: every booking answered "booked" is
// stored exactly once, no other is, the seats add up, and no concert is
// oversold: four in five bookings got their seats.
func checkBookings(t *testing.T, r report) {
	t.Helper()
	db := openReader(t, r.dbPath)
	for _, concert := range []string{"concert-each", "concert-group"} {
		rows, err := db.Query(`SELECT id FROM bookings WHERE concert_id = ?`, concert)
		if err != nil {
			t.Fatalf("reading the bookings of %s: %v", concert, err)
		}
		var stored []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			stored = append(stored, id)
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		brokertest.CheckIDs(t, concert+": bookings stored against bookings answered booked", stored, r.booked[concert])
		var capacity, booked, seats int
		if err := db.QueryRow(`SELECT capacity, booked, (SELECT COALESCE(SUM(seats), 0) FROM bookings WHERE concert_id = ?) FROM concerts WHERE id = ?`,
			concert, concert).Scan(&capacity, &booked, &seats); err != nil {
			t.Fatalf("reading %s: %v", concert, err)
		}
		if booked > capacity || booked != seats {
			t.Errorf("%s counts %d of %d seats booked and its bookings hold %d: oversold or miscounted", concert, booked, capacity, seats)
		}
		if want := testN * 4 / 5; len(stored) != want {
			t.Errorf("%s holds %d bookings, want %d: each booking takes %d seats of %d", concert, len(stored), want, seatsPerBooking, capacity)
		}
	}
}

// checkPublished takes every message of the queue (the program purges it
// next) and checks that each confirmed message is there exactly once,
// persistent, with its header and a body that decodes.
func checkPublished(t *testing.T, amqpURL, queue string, want []string) {
	t.Helper()
	ch := testChannel(t, amqpURL)
	var got []string
	for {
		d, ok, err := ch.Get(queue, true /* auto-ack */)
		if err != nil {
			t.Fatalf("reading queue %s: %v", queue, err)
		}
		if !ok {
			break
		}
		got = append(got, d.MessageId)
		if d.DeliveryMode != amqp.Persistent {
			t.Errorf("%s: delivery mode %d, want persistent", d.MessageId, d.DeliveryMode)
		}
		if name, _ := d.Headers["x-event-name"].(string); name != contracts.EventBookedName || d.RoutingKey != contracts.EventBookedName {
			t.Errorf("%s: x-event-name %q, routing key %q, want %s for both", d.MessageId, name, d.RoutingKey, contracts.EventBookedName)
		}
		if _, err := decodeBooking(d); err != nil {
			t.Errorf("%s: %v", d.MessageId, err)
		}
	}
	if len(want) != 3*testN {
		t.Errorf("the program reports %d messages published, want %d (three ways)", len(want), 3*testN)
	}
	brokertest.CheckIDs(t, "part 2: the queue against the confirmed messages", got, want)
}

// checkDrained checks part 3 once both backlogs are drained: the queue
// holds nothing, ready or unacked; the dead-letter queue holds exactly the
// two poison messages, each rejected once; and the database has applied
// every valid message exactly once, with its seats.
func checkDrained(t *testing.T, rabbit *brokertest.RabbitMQ, queue, dbPath string) {
	t.Helper()
	if got, err := waitCounts(rabbit, queue, counts{}); err != nil && !errors.Is(err, brokertest.ErrNoCtl) {
		t.Errorf("after both drains the broker counts %d ready and %d unacked in queue %s: %v; want none", got.ready, got.unacked, queue, err)
	}
	// Read the dead letters, then close the channel: they go back.
	ch := testChannel(t, rabbit.URL)
	var dead []string
	for {
		d, ok, err := ch.Get(queue+".dlq", false /* auto-ack */)
		if err != nil {
			t.Fatalf("reading the dead-letter queue: %v", err)
		}
		if !ok {
			break
		}
		dead = append(dead, d.MessageId)
		list, _ := d.Headers["x-death"].([]any)
		entry, _ := func() (amqp.Table, bool) {
			if len(list) == 0 {
				return nil, false
			}
			e, ok := list[0].(amqp.Table)
			return e, ok
		}()
		if reason, _ := entry["reason"].(string); reason != "rejected" || entry["count"] != int64(1) {
			t.Errorf("dead letter %s has x-death %v; want reason rejected, count 1", d.MessageId, entry)
		}
	}
	_ = ch.Close()
	brokertest.CheckIDs(t, "the dead-letter queue", dead, []string{"drain-each-poison", "drain-window-poison"})

	db := openReader(t, dbPath)
	rows, err := db.Query(`SELECT message_id FROM applied`)
	if err != nil {
		t.Fatalf("reading the applied messages: %v", err)
	}
	var applied []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		applied = append(applied, id)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	want := append(messageIDs("drain-each", testN), messageIDs("drain-window", testN)...)
	brokertest.CheckIDs(t, "part 3: the messages applied against those published", applied, want)
	var seats int
	if err := db.QueryRow(`SELECT COALESCE(SUM(seats), 0) FROM sold`).Scan(&seats); err != nil {
		t.Fatal(err)
	}
	if seats != len(want)*seatsPerBooking {
		t.Errorf("table sold counts %d seats, want %d", seats, len(want)*seatsPerBooking)
	}
}

// TestKeep runs the lab with -keep: the queues, the exchanges and the
// database stay, the dead-letter queue holds the two poison messages, and
// the main queue is empty.
func TestKeep(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	exchange := brokertest.Name(t, "events")
	queue := brokertest.Name(t, "lab14")
	dir := t.TempDir()
	deleteAfter(t, rabbit.URL, exchange, queue)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	var dbPath string
	observe := func(step string, r report) {
		if step == stepStored {
			dbPath = r.dbPath
		}
	}
	if err := runProbed(ctx, []string{"-url", rabbit.URL, "-exchange", exchange, "-queue", queue, "-n", "50", "-dir", dir, "-keep"}, &out, observe); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	kept := fmt.Sprintf("kept queue %q, exchange %q and queue %q (the queues expire after 5m0s unused), exchange %q and the SQLite database %s\n",
		queue, queue+".dlx", queue+".dlq", exchange, dbPath)
	if !strings.HasSuffix(out.String(), kept) {
		t.Errorf("the output does not end with %q:\n%s", kept, out.String())
	}
	if _, err := os.Stat(dbPath); err != nil {
		t.Errorf("the SQLite database is gone despite -keep: %v", err)
	}
	ch := testChannel(t, rabbit.URL)
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("queue %s is gone despite -keep: %v", queue, err)
	}
	if q.Messages != 0 {
		t.Errorf("queue %s holds %d messages, want 0", queue, q.Messages)
	}
	var dead []string
	for {
		d, ok, err := ch.Get(queue+".dlq", true /* auto-ack */)
		if err != nil {
			t.Fatalf("reading the dead-letter queue: %v", err)
		}
		if !ok {
			break
		}
		dead = append(dead, d.MessageId)
	}
	brokertest.CheckIDs(t, "the dead-letter queue", dead, []string{"drain-each-poison", "drain-window-poison"})
	for _, x := range []struct{ name, kind string }{{exchange, amqp.ExchangeTopic}, {queue + ".dlx", amqp.ExchangeFanout}} {
		if err := testChannel(t, rabbit.URL).ExchangeDeclarePassive(x.name, x.kind, true, x.kind == amqp.ExchangeFanout, false, false, nil); err != nil {
			t.Errorf("exchange %s is gone despite -keep: %v", x.name, err)
		}
	}
}

// TestPoisonAloneInAWindowCommitsNothing drains with -prefetch 1, so that
// the poison message fills a window on its own: that window has nothing to
// store, and must cost no transaction (an empty BEGIN/COMMIT is still an
// fsync). 20 messages, 20 transactions.
func TestPoisonAloneInAWindowCommitsNothing(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	exchange := brokertest.Name(t, "events")
	queue := brokertest.Name(t, "lab14")
	dir := t.TempDir()
	deleteAfter(t, rabbit.URL, exchange, queue)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, []string{"-url", rabbit.URL, "-exchange", exchange, "-queue", queue, "-n", "20", "-prefetch", "1", "-dir", dir}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	want := "  per prefetch window: a transaction and one multiple-ack per window: 20 applied in 20 transactions, 20 acks; rejected alone: drain-window-poison\n"
	if !strings.Contains(out.String(), want) {
		t.Errorf("with -prefetch 1 the output has no line %q: a window that holds only the poison message must commit no transaction\n%s", want, out.String())
	}
	checkGone(t, rabbit.URL, exchange, queue)
}

// TestInterruptStopsCleanly cancels the context, as Ctrl-C does, as the
// group committer starts, and while the windowed consumer holds a window
// it has not committed: run returns the cancellation and deletes the
// queues, the exchanges and the database.
func TestInterruptStopsCleanly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		marker string                           // cancel once this is printed, or
		at     func(step string, r report) bool // once this is observed
	}{
		{name: "part 1, group commit", marker: "  one transaction per booking:"},
		{name: "part 3, windowed consumer", at: func(step string, r report) bool {
			return step == stepBeforeCommit && len(r.ids) > 0 && strings.HasPrefix(r.ids[0], "drain-window")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rabbit := brokertest.AMQP(t)
			exchange := brokertest.Name(t, "events")
			queue := brokertest.Name(t, "lab14")
			dir := t.TempDir()
			deleteAfter(t, rabbit.URL, exchange, queue)

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			out := &labtest.CancelOn{Marker: "never printed", Cancel: cancel}
			if tc.marker != "" {
				out.Marker = tc.marker
			}
			observe := func(step string, r report) {
				if tc.at != nil && tc.at(step, r) {
					cancel()
				}
			}
			err := runProbed(ctx, []string{"-url", rabbit.URL, "-exchange", exchange, "-queue", queue, "-n", "200", "-dir", dir}, out, observe)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("run = %v, want context.Canceled\n%s", err, out.String())
			}
			if strings.Contains(out.String(), "deleted queue") {
				t.Errorf("the interrupted run printed the end of a complete run:\n%s", out.String())
			}
			checkGone(t, rabbit.URL, exchange, queue)
			if left, _ := os.ReadDir(dir); len(left) > 0 {
				t.Errorf("the interrupted run left %s in -dir: want its directory deleted", left[0].Name())
			}
		})
	}
}

// TestBookGivesUpOnABrokenCommitter hands a booking to a committer that
// takes requests but never answers them (one that collects without a
// maxWait timer, for a batch that never fills), and to one that takes
// none: book must give up after waitTimeout with a sentence that says what
// the committer failed to do, so that the program fails instead of hanging.
func TestBookGivesUpOnABrokenCommitter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		takes bool // the committer receives the request
		want  string
	}{
		{"takes but never answers", true, "committer.run must stop collecting once maxWait has passed since the first request of a batch"},
		{"takes nothing", false, "committer.run must receive from c.requests in a loop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := &committer{requests: make(chan request), maxBatch: 32, maxWait: 2 * time.Millisecond}
			if tc.takes {
				// Collect until the test ends, answer never.
				ended := make(chan struct{})
				t.Cleanup(func() { close(ended) })
				go func() {
					for {
						select {
						case <-c.requests:
						case <-ended:
							return
						}
					}
				}()
			}
			b := newBooking("group", 1, "concert-group")
			done := make(chan error, 1)
			go func() {
				_, err := c.book(context.Background(), b)
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("book = %v; want an error containing %q", err, tc.want)
				}
			case <-time.After(waitTimeout + 20*time.Second):
				t.Fatalf("book still waits for a committer that %s, %v after it was called: give up after waitTimeout (%v), saying what the committer failed to do",
					tc.name, waitTimeout+20*time.Second, waitTimeout)
			}
		})
	}
}

// TestSetupErrors checks that the usual mistakes give one clear sentence,
// an error (so main exits 1), no output, and nothing left in -dir.
func TestSetupErrors(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	wrong, err := url.Parse(rabbit.URL)
	if err != nil {
		t.Fatal(err)
	}
	wrong.User = url.UserPassword(wrong.User.Username(), "wrong-password")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"malformed URL", []string{"-url", "amqp://guest:wrong-password%zz@127.0.0.1:5672/"}, "the AMQP URL in -url or AMQP_URL is malformed"},
		{"wrong credentials", []string{"-url", wrong.String()}, "refused the user name or password"},
		{"nothing listening", []string{"-url", "amqp://guest:wrong-password@" + brokertest.ClosedPort(t) + "/"}, "nothing is listening there"},
		{"no batch", []string{"-url", rabbit.URL, "-batch", "0"}, "must be at least 1"},
		{"stray argument", []string{"-url", rabbit.URL, "part1"}, "unexpected arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			dir := t.TempDir()
			var out bytes.Buffer
			args := append(tc.args, "-queue", brokertest.Name(t, "never"), "-exchange", brokertest.Name(t, "never"), "-dir", dir)
			err := run(ctx, args, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run = %v, want an error containing %q", err, tc.want)
			}
			if msg := err.Error(); strings.Contains(msg, "wrong-password") || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line that hides the password", msg)
			}
			if out.Len() != 0 {
				t.Errorf("printed %q before failing; want nothing", out.String())
			}
			if left, _ := os.ReadDir(dir); len(left) > 0 {
				t.Errorf("left %s in -dir", left[0].Name())
			}
		})
	}
}

// TestCtrlCStopsTheDial: a server that accepts the connection and never
// answers must not hold the lab for the whole dial timeout (5 s), deaf to
// Ctrl-C: run stops as soon as ctx ends, with ctx's error (main exits
// 130), prints nothing and leaves nothing in -dir.
func TestCtrlCStopsTheDial(t *testing.T) {
	t.Parallel()
	const patience = 200 * time.Millisecond // the Ctrl-C comes this long into the dial
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	dir := t.TempDir()
	args := []string{"-url", "amqp://guest:guest@" + brokertest.SilentPort(t) + "/",
		"-queue", brokertest.Name(t, "never"), "-exchange", brokertest.Name(t, "never"), "-dir", dir}
	start := time.Now()
	var out bytes.Buffer
	err := run(ctx, args, &out)
	if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > 2*time.Second {
		t.Errorf("run against a server that never answers, with ctx ending after %v, returned after %v with %v; want ctx's error at once", patience, took.Round(time.Millisecond), err)
	}
	if out.Len() != 0 {
		t.Errorf("printed %q; want nothing", out.String())
	}
	if left, _ := os.ReadDir(dir); len(left) > 0 {
		t.Errorf("left %s in -dir", left[0].Name())
	}
}

// BenchmarkBatching measures each one-at-a-time way and its batched
// counterpart in the same run, on the same database and broker, and
// reports each batched way's rate as a ratio of its baseline. Run the
// sub-benchmarks in their order and with a fixed count, so that each ratio
// has its baseline from the same run:
//
//	go test -run '^$' -bench Batching -benchtime 2000x ./labs/14-batching
func BenchmarkBatching(b *testing.B) {
	rabbit := brokertest.AMQP(b)
	ctx := context.Background()
	l := &lab{
		exchange: brokertest.Name(b, "events"), queue: brokertest.Name(b, "bench"),
		callers: 32, batch: 32, wait: 2 * time.Millisecond, window: 64, prefetch: 64,
		observe: func(string, report) {},
	}
	var err error
	if l.conn, err = labkit.DialAMQP(rabbit.URL, "myevents-14-batching benchmark"); err != nil {
		b.Fatal(err)
	}
	defer l.conn.Close()
	if l.ch, err = l.conn.Channel(); err != nil {
		b.Fatal(err)
	}
	if err := declareTopology(l.ch, l.exchange, l.queue); err != nil {
		b.Fatal(err)
	}
	defer func() { _, _ = deleteTopology(l.conn, l.queue, l.exchange) }()
	if err := l.ch.Confirm(false); err != nil {
		b.Fatal(err)
	}
	l.dbPath = b.TempDir() + "/bookings.db"
	if l.db, err = openStore(ctx, l.dbPath); err != nil {
		b.Fatal(err)
	}
	defer l.db.Close()

	run := 0 // a fresh prefix per call: b.Run calls each function more than once
	prefix := func(way string) string {
		run++
		return fmt.Sprintf("%s-%d", way, run)
	}
	// The ways, in pairs: a baseline, then what batches it.
	book := func(b *testing.B, group bool) float64 {
		concert := prefix("concert")
		if err := addConcert(ctx, l.db, concert, b.N*seatsPerBooking); err != nil {
			b.Fatal(err)
		}
		c := &committer{db: l.db, requests: make(chan request), maxBatch: l.batch, maxWait: l.wait, reserve: reserveSeats}
		stopped := make(chan error, 1)
		if group {
			go func() { stopped <- c.run(ctx) }()
		}
		b.ResetTimer()
		calls, err := callConcurrently(ctx, l.callers, b.N, func(ctx context.Context, i int) error {
			bk := newBooking(concert, i, concert)
			if group {
				_, err := c.book(ctx, bk)
				return err
			}
			_, err := bookOwnTx(ctx, l.db, bk)
			return err
		})
		b.StopTimer()
		if group {
			close(c.requests)
			if err := <-stopped; err != nil {
				b.Fatal(err)
			}
		}
		if err != nil {
			b.Fatal(err)
		}
		return rate(b.N, calls.elapsed)
	}
	publish := func(b *testing.B, emitters bool) float64 {
		ids := messageIDs(prefix("publish"), b.N)
		b.ResetTimer()
		start := time.Now()
		if !emitters {
			err = publishEach(ctx, l.ch, l.exchange, ids)
		} else {
			pub := &publisher{ch: l.ch, exchange: l.exchange, window: l.window, in: make(chan emission)}
			stopped := make(chan error, 1)
			go func() { stopped <- pub.run(ctx) }()
			_, err = callConcurrently(ctx, l.callers, b.N, func(ctx context.Context, i int) error {
				msg, err := bookingMessage(ids[i-1], "concert")
				if err != nil {
					return err
				}
				return pub.emit(ctx, msg)
			})
			close(pub.in)
			if runErr := <-stopped; err == nil {
				err = runErr
			}
		}
		elapsed := time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := l.ch.QueuePurge(l.queue, false); err != nil {
			b.Fatal(err)
		}
		return rate(b.N, elapsed)
	}
	drain := func(b *testing.B, windows bool) float64 {
		ids := messageIDs(prefix("drain"), b.N)
		if err := publishWindow(ctx, l.ch, l.exchange, ids, l.window); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		start := time.Now()
		if windows {
			_, err = l.drainWindows(ctx, b.N)
		} else {
			_, err = l.drainEach(ctx, b.N)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		return rate(b.N, elapsed)
	}

	pairs := []struct {
		name, baseline, batched, unit string
		measure                       func(b *testing.B, batched bool) float64
	}{
		{"store", "one-tx-per-booking", "group-commit", "bookings/s", book},
		{"publish", "confirm-each", "emitters-one-publisher", "msgs/s", publish},
		{"consume", "tx-and-ack-per-message", "tx-and-ack-per-window", "msgs/s", drain},
	}
	for _, p := range pairs {
		var base float64
		b.Run(p.name+"/"+p.baseline, func(b *testing.B) {
			base = p.measure(b, false)
			b.ReportMetric(base, p.unit)
		})
		b.Run(p.name+"/"+p.batched, func(b *testing.B) {
			got := p.measure(b, true)
			b.ReportMetric(got, p.unit)
			if base > 0 {
				b.ReportMetric(got/base, "x-baseline")
			}
		})
	}
}

// waitCounts asks rabbitmqctl for the queue's counts until they are want,
// for up to ten seconds, and returns the last ones. The error is
// brokertest.ErrNoCtl without rabbitmqctl, or says the counts never matched.
func waitCounts(rabbit *brokertest.RabbitMQ, queue string, want counts) (counts, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := queueCounts(rabbit, queue)
		switch {
		case err != nil:
			return got, err
		case got == want:
			return got, nil
		case time.Now().After(deadline):
			return got, fmt.Errorf("the counts did not reach %+v within 10 s", want)
		}
	}
}

// queueCounts asks rabbitmqctl for a queue's ready and unacked counts,
// which AMQP alone cannot tell (queue.declare reports only ready ones).
func queueCounts(rabbit *brokertest.RabbitMQ, queue string) (counts, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	text, err := rabbit.Ctl(ctx, "list_queues", "--quiet", "--no-table-headers", "name", "messages_ready", "messages_unacknowledged")
	if err != nil {
		return counts{}, err
	}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != queue {
			continue
		}
		ready, err1 := strconv.Atoi(f[1])
		unacked, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil {
			return counts{}, fmt.Errorf("unexpected rabbitmqctl line %q", line)
		}
		return counts{ready, unacked}, nil
	}
	return counts{}, fmt.Errorf("rabbitmqctl does not list queue %s", queue)
}

// openReader opens the lab's SQLite file with a connection of the test's
// own, closed when the test ends. WAL lets it read while the lab writes.
func openReader(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_busy_timeout=10000")
	if err != nil {
		t.Fatalf("opening %s: %v", path, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// checkGone checks that the queues and the exchanges of a run are deleted.
func checkGone(t *testing.T, amqpURL, exchange, queue string) {
	t.Helper()
	for _, q := range []string{queue, queue + ".dlq"} {
		if _, err := testChannel(t, amqpURL).QueueDeclarePassive(q, true, false, false, false, nil); err == nil {
			t.Errorf("queue %s still exists after the run", q)
		}
	}
	for _, x := range []string{queue + ".dlx", exchange} {
		var amqpErr *amqp.Error
		err := testChannel(t, amqpURL).ExchangeDeclarePassive(x, amqp.ExchangeTopic, true, false, false, false, nil)
		if !errors.As(err, &amqpErr) || amqpErr.Code != amqp.NotFound {
			t.Errorf("exchange %s after the run: %v; want 404, deleted", x, err)
		}
	}
}

// deleteAfter deletes, when the test ends, everything a run with these
// names may have declared.
func deleteAfter(t *testing.T, amqpURL, exchange, queue string) {
	t.Helper()
	t.Cleanup(func() {
		conn, err := amqp.Dial(amqpURL)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		for _, q := range []string{queue, queue + ".dlq"} {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
		for _, x := range []string{queue + ".dlx", exchange} {
			_ = ch.ExchangeDelete(x, false, false)
		}
	})
}

// testChannel opens a connection and channel of the test's own, closed
// when the test ends.
func testChannel(t testing.TB, amqpURL string) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatalf("dialing %s: %v", brokertest.Redact(amqpURL), err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("opening a channel: %v", err)
	}
	return ch
}
