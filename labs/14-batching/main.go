// Command 14-batching shows what a durable write and a broker confirm cost
// when they are paid one message at a time, and how paying them once per
// batch multiplies the rate without weakening the guarantee: nothing is
// answered, confirmed or acked before it is durable.
//
// It measures three places, in one run, on this machine:
//
//  1. the store: bookings written to SQLite (WAL, synchronous=FULL, one
//     connection) by concurrent callers, first with one transaction (one
//     fsync) per booking, then through a group committer, which writes what
//     is waiting in one transaction, checks the seats of each booking in the
//     order they arrived, and answers each caller after the commit;
//  2. publishing: persistent messages with one confirm wait per message and
//     with a window of confirms (both from lab 03), then concurrent emitters
//     handing their messages to one publisher, which keeps a window of
//     confirms in flight and answers each emitter when its own confirm
//     arrives;
//  3. consuming: a backlog with a poison message drained into SQLite with a
//     transaction and an ack per message, then with one transaction and one
//     multiple-ack per prefetch window, the poison rejected alone.
//
// This file is the program and its first half, the store. broker.go holds
// the second half: the publishing and consuming of parts 2 and 3.
//
// Usage:
//
//	go run ./labs/14-batching [-url amqp://guest:guest@127.0.0.1:5672/] [-exchange lab14.events] [-queue lab14.bookings] [-n 1000] [-callers 32] [-batch 32] [-wait 2ms] [-window 64] [-prefetch 64] [-dir /tmp] [-keep]
//
// The exchange is the lab's own, lab14.events, not the capstone's "events",
// whose BookingService queue would take the lab's made-up bookings as real
// ones. The SQLite database lives in a new directory under -dir. The lab
// deletes the queues, the exchanges and that directory at the end, also on
// Ctrl-C, unless -keep is given (the exchange only if no other queue is
// bound to it).
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	_ "modernc.org/sqlite" // registers the "sqlite" driver: pure Go, no C compiler needed

	"example.com/myevents/labs/labkit"
)

// defaultURL is the local development broker.
const defaultURL = "amqp://guest:guest@127.0.0.1:5672/"

// seatsPerBooking is what every booking of part 1 asks for. The concert
// has seats for four bookings in five, so the last fifth must be refused.
const seatsPerBooking = 2

// queueTTL is how long an unused queue lives (x-expires), so that queues
// kept with -keep, or left behind by a crash, clean themselves up.
const queueTTL = 5 * time.Minute

// waitTimeout bounds every wait for a delivery, a queue count or the
// group committer, so the program never hangs on a broker, or a
// committer, that does not do what we expect.
const waitTimeout = 10 * time.Second

// Steps at which the program calls its probe. Tests use them to look at
// the database and the broker at exactly that moment.
const (
	stepStored       = "1: both ways have stored their bookings"
	stepPublished    = "2: every way has published, and the queue holds it all"
	stepBeforeCommit = "3: a consumer is about to commit a transaction"
	stepDrained      = "3: both consumers have drained their backlog"
)

// report is what the program knows at a step.
type report struct {
	dbPath string              // the SQLite database
	booked map[string][]string // step 1: the IDs answered "booked", per concert
	ids    []string            // step 2: every message ID published; step 3: those of the transaction
	last   bool                // step 3: the transaction holds the backlog's last delivery
}

// probe is told about each step as it happens.
type probe func(step string, r report)

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
	return runProbed(ctx, args, out, func(string, report) {})
}

// runProbed is run with a probe; tests call it to watch the database and
// the broker.
func runProbed(ctx context.Context, args []string, out io.Writer, observe probe) error {
	fs := flag.NewFlagSet("14-batching", flag.ContinueOnError)
	amqpURL := fs.String("url", "", "AMQP URL of the broker (default $AMQP_URL, else "+defaultURL+")")
	exchange := fs.String("exchange", "lab14.events", "name of the durable topic exchange to publish to (deleted at the end unless -keep, and only if no other queue is bound to it)")
	queue := fs.String("queue", "lab14.bookings", "name of the queue parts 2 and 3 fill and drain; its dead letters go to <queue>.dlx and <queue>.dlq")
	n := fs.Int("n", 1000, "bookings per way in part 1, messages per way in parts 2 and 3")
	callers := fs.Int("callers", 32, "concurrent callers: booking requests in part 1, emitters in part 2")
	batch := fs.Int("batch", 32, "group commit: the most bookings one transaction takes")
	wait := fs.Duration("wait", 2*time.Millisecond, "how long a batch (or a window of deliveries) may wait for more after its first")
	window := fs.Int("window", 64, "how many publishes may be unconfirmed at once in part 2")
	prefetch := fs.Int("prefetch", 64, "prefetch of the consumers in part 3, and the most deliveries one transaction takes")
	dir := fs.String("dir", os.TempDir(), "directory in which the lab makes a new directory for its SQLite database")
	keep := fs.Bool("keep", false, "keep the queues, the exchanges and the SQLite database at the end instead of deleting them")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; see -h", fs.Args())
	}
	// Check the names before dialing (labkit.CheckNames says why).
	if err := labkit.CheckNames(*exchange, *queue, "lab14.events"); err != nil {
		return err
	}
	// The environment supplies the URL unless -url does; the fallback is
	// applied here, not as the flag's default, so that -h never prints a
	// password from AMQP_URL.
	if *amqpURL == "" {
		*amqpURL = labkit.EnvOr("AMQP_URL", defaultURL)
	}
	if *n < 1 || *callers < 1 || *batch < 1 || *window < 1 || *prefetch < 1 || *wait <= 0 {
		return fmt.Errorf("-n, -callers, -batch, -window and -prefetch must be at least 1 and -wait above 0, got %d, %d, %d, %d, %d and %v",
			*n, *callers, *batch, *window, *prefetch, *wait)
	}
	if *prefetch > 65535 {
		return fmt.Errorf("-prefetch must be at most 65535 (AMQP's limit), got %d", *prefetch)
	}
	l := &lab{
		url: *amqpURL, exchange: *exchange, queue: *queue, dir: *dir,
		n: *n, callers: *callers, batch: *batch, wait: *wait, window: *window, prefetch: *prefetch,
		observe: observe, out: out,
	}
	return l.run(ctx, *keep)
}

// lab holds what the three parts share.
type lab struct {
	url, exchange, queue, dir string
	n, callers, batch         int
	wait                      time.Duration
	window, prefetch          int
	observe                   probe
	out                       io.Writer

	conn   *amqp.Connection
	ch     *amqp.Channel // confirm mode: declares, counts, publishes
	db     *sql.DB
	dbPath string
}

func (l *lab) run(ctx context.Context, keep bool) error {
	// Connect first: without a broker there is nothing to compare, and
	// nothing should be left on disk.
	conn, err := labkit.DialAMQPContext(ctx, l.url, "myevents-14-batching")
	if err != nil {
		return err
	}
	defer conn.Close()
	l.conn = conn
	fmt.Fprintf(l.out, "connected to RabbitMQ at %s\n", labkit.Redact(l.url))
	if l.ch, err = conn.Channel(); err != nil {
		return fmt.Errorf("opening a channel: %w", err)
	}

	// The database, in a directory of its own.
	dbDir, err := os.MkdirTemp(l.dir, "lab14-")
	if err != nil {
		return fmt.Errorf("making a directory for the SQLite database in %s: %w", l.dir, err)
	}
	l.dbPath = filepath.Join(dbDir, "bookings.db")
	if l.db, err = openStore(ctx, l.dbPath); err != nil {
		_ = os.RemoveAll(dbDir)
		return err
	}
	dbClosed := false
	closeDB := func() error {
		if dbClosed {
			return nil
		}
		dbClosed = true
		return l.db.Close()
	}
	defer func() {
		_ = closeDB()
		if !keep {
			_ = os.RemoveAll(dbDir)
		}
	}()
	var journal string
	var synchronous int
	if err := l.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&journal); err != nil {
		return fmt.Errorf("reading the journal mode of %s: %w", l.dbPath, err)
	}
	if err := l.db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&synchronous); err != nil {
		return fmt.Errorf("reading the synchronous setting of %s: %w", l.dbPath, err)
	}
	levels := map[int]string{0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
	fmt.Fprintf(l.out, "SQLite database bookings.db in a new directory: journal_mode=%s, synchronous=%d (%s), one connection\n", journal, synchronous, levels[synchronous])

	// The broker's side: the exchange, the queue and its dead letters.
	// Whatever happens below, delete them when we leave, unless -keep.
	deleted := keep
	defer func() {
		if !deleted {
			_, _ = deleteTopology(conn, l.queue, l.exchange)
		}
	}()
	if err := declareTopology(l.ch, l.exchange, l.queue); err != nil {
		return err
	}
	fmt.Fprintf(l.out, "exchange %q (topic, durable); queue %q bound for event.booked, dead letters to %q\n", l.exchange, l.queue, l.queue+".dlq")
	// Publish with confirms (lab 03) on this channel from now on.
	if err := l.ch.Confirm(false /* no-wait */); err != nil {
		return fmt.Errorf("enabling publisher confirms: %w", err)
	}

	parts := []func(context.Context) error{l.partStore, l.partPublish, l.partConsume}
	for _, part := range parts {
		if err := ctx.Err(); err != nil {
			return err
		}
		fmt.Fprintln(l.out)
		if err := part(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err() // Ctrl-C, whatever it interrupted
			}
			return err
		}
	}

	fmt.Fprintln(l.out)
	if keep {
		fmt.Fprintf(l.out, "kept queue %q, exchange %q and queue %q (the queues expire after %v unused), exchange %q and the SQLite database %s\n",
			l.queue, l.queue+".dlx", l.queue+".dlq", queueTTL, l.exchange, l.dbPath)
		return nil
	}
	deleted = true
	inUse, err := deleteTopology(conn, l.queue, l.exchange)
	if err != nil {
		return err
	}
	fmt.Fprintf(l.out, "deleted queue %q, exchange %q and queue %q\n", l.queue, l.queue+".dlx", l.queue+".dlq")
	if inUse {
		fmt.Fprintf(l.out, "kept exchange %q: queues are bound to it, so the if-unused delete was refused\n", l.exchange)
	} else {
		fmt.Fprintf(l.out, "deleted exchange %q\n", l.exchange)
	}
	if err := closeDB(); err != nil {
		return fmt.Errorf("closing %s: %w", l.dbPath, err)
	}
	if err := os.RemoveAll(dbDir); err != nil {
		return fmt.Errorf("deleting the SQLite database: %w", err)
	}
	fmt.Fprintln(l.out, "deleted the SQLite database and its directory")
	return nil
}

// partStore makes l.n bookings of two seats for one concert per way, from
// l.callers goroutines at once: first each booking in a transaction of
// its own, then through a group committer. Both ways answer a caller only after its
// booking is committed, so both keep the same promise; they differ in how
// many commits, and fsyncs, they pay for it.
func (l *lab) partStore(ctx context.Context) error {
	capacity := l.n * seatsPerBooking * 4 / 5
	fmt.Fprintf(l.out, "1. store: %d bookings of %d seats from %d callers at once, per way, for a concert of %d seats\n",
		l.n, seatsPerBooking, l.callers, capacity)
	booked := map[string][]string{}

	// The baseline: every caller begins, reserves and commits on its own.
	// They queue for the one connection, and every commit waits for its
	// own fsync.
	if err := addConcert(ctx, l.db, "concert-each", capacity); err != nil {
		return err
	}
	each := &tally{}
	eachTiming, err := callConcurrently(ctx, l.callers, l.n, func(ctx context.Context, i int) error {
		b := newBooking("each", i, "concert-each")
		ok, err := bookOwnTx(ctx, l.db, b)
		if err != nil {
			return err
		}
		each.add(b.id, ok)
		return nil
	})
	if err != nil {
		return err
	}
	check, err := checkConcert(ctx, l.db, "concert-each")
	if err != nil {
		return err
	}
	fmt.Fprintf(l.out, "  one transaction per booking: %d commits; %s; %s\n", l.n, each, check)
	booked["concert-each"] = each.bookedIDs()

	// Group commit: the same callers hand their bookings to one committer
	// (solution.go, this lab's exercise) and wait for its answer.
	if err := addConcert(ctx, l.db, "concert-group", capacity); err != nil {
		return err
	}
	c := &committer{
		db:       l.db,
		requests: make(chan request),
		maxBatch: l.batch,
		maxWait:  l.wait,
		reserve:  reserveSeats,
	}
	// A committer that fails cancels the callers with its error as the
	// cause, so that none of them waits for an answer that cannot come.
	callCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	stopped := make(chan error, 1)
	go func() {
		err := c.run(callCtx)
		if err != nil {
			stop(fmt.Errorf("the group committer stopped: %w", err))
		}
		stopped <- err
	}()
	group := &tally{}
	groupTiming, err := callConcurrently(callCtx, l.callers, l.n, func(ctx context.Context, i int) error {
		b := newBooking("group", i, "concert-group")
		ok, err := c.book(ctx, b)
		if err != nil {
			return err
		}
		group.add(b.id, ok)
		return nil
	})
	// No more requests: the committer answers what it holds and returns.
	close(c.requests)
	var runErr error
	select {
	case runErr = <-stopped:
	case <-time.After(waitTimeout):
		stop(errors.New("the group committer did not return after c.requests was closed"))
		if err != nil {
			return err // what the callers saw says more
		}
		return fmt.Errorf("the group committer did not return within %v of c.requests being closed: a receive from a closed channel gives ok == false at once; committer.run must then commit and answer the batch it holds, and return nil",
			waitTimeout)
	}
	if runErr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("the group committer: %w", runErr)
	}
	if err != nil {
		return err
	}
	if check, err = checkConcert(ctx, l.db, "concert-group"); err != nil {
		return err
	}
	commits := len(c.sizes)
	fmt.Fprintf(l.out, "  group commit, up to %d bookings or %v per batch: %d commits (%.1f bookings each); %s; %s\n",
		l.batch, l.wait, commits, float64(l.n)/float64(max(commits, 1)), group, check)
	booked["concert-group"] = group.bookedIDs()
	l.observe(stepStored, report{dbPath: l.dbPath, booked: booked})

	eachRate, groupRate := rate(l.n, eachTiming.elapsed), rate(l.n, groupTiming.elapsed)
	fmt.Fprintf(l.out, "  one transaction per booking %.0f bookings/s, 99%% answered within %.1f ms; group commit %.0f bookings/s, within %.1f ms; %.1f times as fast\n",
		eachRate, ms(eachTiming.p99()), groupRate, ms(groupTiming.p99()), groupRate/eachRate)
	return nil
}

// booking is one request for seats at a concert.
type booking struct {
	id, concert, user string
	seats             int
}

// newBooking returns the i-th booking of a way, such as group-0042.
func newBooking(way string, i int, concert string) booking {
	return booking{
		id:      fmt.Sprintf("%s-%04d", way, i),
		concert: concert,
		user:    fmt.Sprintf("user-%04d", i),
		seats:   seatsPerBooking,
	}
}

// reserveSeats books b inside tx if its concert still has the seats: one
// conditional UPDATE, so that the check and the write are a single step,
// and each booking sees every booking before it in the same transaction.
// It returns false, and writes nothing, when the concert is sold out.
func reserveSeats(ctx context.Context, tx *sql.Tx, b booking) (bool, error) {
	res, err := tx.ExecContext(ctx,
		`UPDATE concerts SET booked = booked + ? WHERE id = ? AND booked + ? <= capacity`,
		b.seats, b.concert, b.seats)
	if err != nil {
		return false, fmt.Errorf("reserving %d seats for %s: %w", b.seats, b.id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("reserving %d seats for %s: %w", b.seats, b.id, err)
	}
	if n == 0 {
		return false, nil // sold out: the concert has not the seats left
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO bookings (id, concert_id, user_id, seats) VALUES (?, ?, ?, ?)`,
		b.id, b.concert, b.user, b.seats); err != nil {
		return false, fmt.Errorf("storing booking %s: %w", b.id, err)
	}
	return true, nil
}

// bookOwnTx is one caller's booking in a transaction of its own: begin,
// reserve, commit, and only then answer. Every booking pays a whole
// commit, and with synchronous=FULL a commit waits for an fsync.
func bookOwnTx(ctx context.Context, db *sql.DB, b booking) (bool, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("beginning the transaction of %s: %w", b.id, err)
	}
	defer tx.Rollback() // after a commit, this does nothing
	booked, err := reserveSeats(ctx, tx, b)
	if err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("committing %s: %w", b.id, err)
	}
	return booked, nil
}

// request is one caller's booking, and where it waits for its answer.
type request struct {
	b     booking
	reply chan result // buffered (1): the committer never waits for a caller
}

// result answers one booking: booked, or sold out; or the error that
// failed its whole batch, in which case nothing of that batch is stored.
type result struct {
	booked bool
	err    error
}

// committer is a group committer. It alone writes to the database: callers
// send it their bookings on requests and wait; it collects what is waiting,
// for at most maxWait after the first or until maxBatch are waiting, writes
// them in one transaction (one fsync), and answers each caller after the
// commit. Its loop, run, and its transaction, commitBatch, are this lab's
// exercise (solution.go; the template is exercise.go).
type committer struct {
	db       *sql.DB
	requests chan request
	maxBatch int
	maxWait  time.Duration
	// reserve books one booking inside the batch's transaction, or
	// answers false when its concert is sold out: reserveSeats, in the
	// program.
	reserve func(ctx context.Context, tx *sql.Tx, b booking) (bool, error)
	// sizes has one entry per committed batch: how many bookings it held.
	sizes []int
}

// book hands b to the committer and waits for the answer, which comes
// only after the batch that holds b is committed. It gives up when ctx
// ends, with ctx's cause, and after waitTimeout with an error that says
// what the committer failed to do: a committer that keeps a booking
// waiting that long is broken, not slow (it waits at most c.maxWait for
// company, then pays one commit), and the program must not hang on it.
func (c *committer) book(ctx context.Context, b booking) (bool, error) {
	r := request{b: b, reply: make(chan result, 1)}
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	select {
	case c.requests <- r:
	case <-ctx.Done():
		return false, context.Cause(ctx)
	case <-timeout.C:
		return false, fmt.Errorf("the group committer did not take booking %s within %v: committer.run must receive from c.requests in a loop, batch after batch, until it is closed",
			b.id, waitTimeout)
	}
	timeout.Reset(waitTimeout)
	select {
	case res := <-r.reply:
		return res.booked, res.err
	case <-ctx.Done():
		return false, context.Cause(ctx)
	case <-timeout.C:
		return false, fmt.Errorf("booking %s has no answer %v after the group committer took it, with a maxWait of %v: committer.run must stop collecting once maxWait has passed since the first request of a batch (a time.Timer in the select), then commit the batch and answer each of its callers",
			b.id, waitTimeout, c.maxWait)
	}
}

// tally counts the answers of one way, safely from many goroutines.
type tally struct {
	mu      sync.Mutex
	booked  []string
	soldOut int
}

// add records one answer; ok is false for sold out.
func (t *tally) add(id string, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ok {
		t.booked = append(t.booked, id)
	} else {
		t.soldOut++
	}
}

func (t *tally) bookedIDs() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.booked...)
}

func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return fmt.Sprintf("%d booked, %d sold out", len(t.booked), t.soldOut)
}

// timing is what callConcurrently measured.
type timing struct {
	elapsed   time.Duration   // from the first call to the last answer
	latencies []time.Duration // how long each call took, sorted
}

// p99 is the time within which 99 calls in 100 were answered.
func (t timing) p99() time.Duration {
	if len(t.latencies) == 0 {
		return 0
	}
	return t.latencies[(len(t.latencies)*99+99)/100-1]
}

// callConcurrently runs call for i = 1..n from callers goroutines at once,
// each taking the next i when its call returns, and measures the calls.
// The first error stops them all.
func callConcurrently(ctx context.Context, callers, n int, call func(ctx context.Context, i int) error) (timing, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var t timing
	start := time.Now()
	for range min(callers, n) {
		wg.Go(func() {
			var mine []time.Duration
			defer func() {
				mu.Lock()
				t.latencies = append(t.latencies, mine...)
				mu.Unlock()
			}()
			for {
				i := int(next.Add(1))
				if i > n || ctx.Err() != nil {
					return
				}
				began := time.Now()
				if err := call(ctx, i); err != nil {
					cancel(err)
					return
				}
				mine = append(mine, time.Since(began))
			}
		})
	}
	wg.Wait()
	t.elapsed = time.Since(start)
	slices.Sort(t.latencies)
	return t, context.Cause(ctx)
}

// openStore creates the SQLite database at path and its tables.
func openStore(ctx context.Context, path string) (*sql.DB, error) {
	params := url.Values{}
	// WAL: a commit appends to the write-ahead log, and readers go on
	// reading while a writer writes.
	params.Set("_journal_mode", "WAL")
	// FULL: fsync the log at every commit, so a committed booking survives
	// a power cut. This is the cost the lab measures.
	params.Set("_synchronous", "FULL")
	// BEGIN takes the write lock at once, rather than at the first write.
	params.Set("_txlock", "immediate")
	params.Set("_busy_timeout", "10000")
	db, err := sql.Open("sqlite", "file:"+path+"?"+params.Encode())
	if err != nil {
		return nil, fmt.Errorf("opening SQLite database %s: %w", path, err)
	}
	// SQLite has one writer at a time: one connection, which writers take
	// in turn, instead of several that fail with "database is locked".
	db.SetMaxOpenConns(1)
	for _, stmt := range []string{
		`CREATE TABLE concerts (id TEXT PRIMARY KEY, capacity INTEGER NOT NULL, booked INTEGER NOT NULL DEFAULT 0)`,
		`CREATE TABLE bookings (id TEXT PRIMARY KEY, concert_id TEXT NOT NULL, user_id TEXT NOT NULL, seats INTEGER NOT NULL)`,
		// Part 3: the event.booked messages applied, once each, and the
		// seats they add up to per concert.
		`CREATE TABLE applied (message_id TEXT PRIMARY KEY, concert_id TEXT NOT NULL, seats INTEGER NOT NULL)`,
		`CREATE TABLE sold (concert_id TEXT PRIMARY KEY, seats INTEGER NOT NULL)`,
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			db.Close()
			return nil, fmt.Errorf("creating the tables of %s: %w", path, err)
		}
	}
	return db, nil
}

// addConcert stores a concert with no seat booked yet.
func addConcert(ctx context.Context, db *sql.DB, id string, capacity int) error {
	if _, err := db.ExecContext(ctx, `INSERT INTO concerts (id, capacity) VALUES (?, ?)`, id, capacity); err != nil {
		return fmt.Errorf("storing concert %s: %w", id, err)
	}
	return nil
}

// checkConcert reads back what the database holds for a concert: the
// booking rows, the seats they add up to, and the concert's own count,
// and fails if they disagree or exceed the capacity.
func checkConcert(ctx context.Context, db *sql.DB, id string) (string, error) {
	var capacity, booked, rows, seats int
	err := db.QueryRowContext(ctx, `
		SELECT c.capacity, c.booked, COUNT(b.id), COALESCE(SUM(b.seats), 0)
		FROM concerts c LEFT JOIN bookings b ON b.concert_id = c.id
		WHERE c.id = ? GROUP BY c.id`, id).Scan(&capacity, &booked, &rows, &seats)
	if err != nil {
		return "", fmt.Errorf("reading back concert %s: %w", id, err)
	}
	if seats != booked || booked > capacity {
		return "", fmt.Errorf("concert %s: its bookings hold %d seats, it counts %d, of %d: oversold or miscounted", id, seats, booked, capacity)
	}
	return fmt.Sprintf("the database holds %d bookings, %d of %d seats", rows, booked, capacity), nil
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// rate returns n per second over elapsed.
func rate(n int, elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	return float64(n) / elapsed.Seconds()
}
