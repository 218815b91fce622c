package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"modernc.org/sqlite"

	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labkit"
)

// The exercise's tests need no broker: the real thing they check the
// committer against is the database, a SQLite file with synchronous=FULL,
// the same as the program's. A watch on the database's one connection sees
// every transaction the committer writes: which bookings it reserved (its
// reserve goes through the watch) and, at the moment SQLite commits it,
// whether any of those bookings had been answered already.

// errInjected is the failure the watch's reserve returns for one booking.
var errInjected = errors.New("injected failure: the disk is full")

// TestExerciseCommitBatch checks commitBatch alone. Four bookings of 2, 3,
// 1 and 1 seats come, in that order, for a concert of 5 seats: the first
// two fit exactly, the last two are sold out. Then a batch whose second
// reserve fails: nothing of it may be stored.
func TestExerciseCommitBatch(t *testing.T) {
	t.Parallel()
	db, w := watchedStore(t, 5)
	c := &committer{db: db, reserve: w.reserve}
	batch := w.requests("b", 2, 3, 1, 1)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	booked, err := c.commitBatch(ctx, batch)
	if errors.Is(err, labkit.ErrTODO) {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatalf("commitBatch: %v", err)
	}
	if got, want := fmt.Sprint(booked), "[true true false false]"; got != want {
		t.Errorf("commitBatch answered %s for bookings of 2, 3, 1 and 1 seats at a concert of 5; want %s: reserve each in the order of the batch, and answer booked[i] for batch[i]", got, want)
	}
	if commits := w.commits(); len(commits) != 1 || len(commits[0]) != 4 {
		t.Errorf("the database saw these transactions commit: %s; want one transaction with all four bookings", describeBatches(commits))
	}
	checkStored(t, w, []string{"b-0001", "b-0002"}, 5)

	// The second reserve of the next batch fails.
	w.failOn("f-0002")
	booked, err = c.commitBatch(ctx, w.requests("f", 1, 1, 1))
	if !errors.Is(err, errInjected) {
		t.Errorf("commitBatch returned %v, %v when the reserve of f-0002 failed with %q; want that error (wrapped is fine)", booked, err, errInjected)
	}
	if rolled := w.rollbacks(); len(rolled) != 1 {
		t.Errorf("the database saw %d rollbacks (%s), want 1: roll the transaction back when a reserve fails (defer tx.Rollback())", len(rolled), describeBatches(rolled))
	}
	checkStored(t, w, []string{"b-0001", "b-0002"}, 5)
}

// TestExerciseGroupCommit sends 200 bookings of 1 to 4 seats, for a
// concert of 300 seats, to a committer with batches of at most 8, as fast
// as it takes them, and checks what the callers were told against what the
// database holds: every booking answered only after its transaction
// committed, answered in the order it arrived (first come, first served),
// stored once if booked and not at all if not, no seat sold twice, and far
// fewer commits than bookings.
func TestExerciseGroupCommit(t *testing.T) {
	t.Parallel()
	const capacity, n, maxBatch = 300, 200, 8
	db, w := watchedStore(t, capacity)
	seats := make([]int, n)
	for i := range seats {
		seats[i] = 1 + i%4 // 500 seats asked for, 300 to sell
	}
	reqs := w.requests("b", seats...)
	c := &committer{db: db, requests: make(chan request), maxBatch: maxBatch, maxWait: 50 * time.Millisecond, reserve: w.reserve}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- c.run(ctx) }()

	// Send every request in order, without waiting for answers: the
	// committer receives them in this order, so this is their arrival
	// order. Then wait until each has its answer, reading none of them
	// yet, so that the watch sees at every commit whether an answer came
	// early.
	send(t, c, w, reqs, stopped)
	awaitAnswers(t, reqs, stopped, w)
	answers := readAnswers(t, reqs)

	// Answered after the commit, never before.
	if early := w.answeredEarly(); len(early) > 0 {
		t.Errorf("%d bookings were answered before the transaction that holds them committed (%s): answer the callers only after tx.Commit returned; a crash between the answer and the commit loses a booking its caller was told is booked",
			len(early), shortList(early))
	}

	// First come, first served: replay the arrival order against the
	// seats left, and compare each answer.
	left := capacity
	var wantBooked []string
	for i, r := range reqs {
		before := left
		want := r.b.seats <= left
		if want {
			left -= r.b.seats
			wantBooked = append(wantBooked, r.b.id)
		}
		if answers[i].booked != want {
			was := "sold out"
			if answers[i].booked {
				was = "booked"
			}
			t.Errorf("%s (%d seats) was answered %s, but when it arrived %d seats were left: reserve each batch's bookings in the order they arrived, and answer batch[i] with booked[i]", r.b.id, r.b.seats, was, before)
		}
	}
	checkStored(t, w, wantBooked, capacity-left)

	// Batches: far fewer commits than bookings, none above maxBatch.
	commits := w.commits()
	switch {
	case len(commits) > n/2:
		t.Errorf("the database saw %d commits for %d bookings: collect the requests that are waiting (up to maxBatch) and write them in one transaction", len(commits), n)
	default:
		for _, b := range commits {
			if len(b) > maxBatch {
				t.Errorf("a transaction held %d bookings (%s); at most maxBatch, %d", len(b), shortList(b), maxBatch)
			}
		}
	}
	sizes := make([]int, len(commits))
	for i, b := range commits {
		sizes[i] = len(b)
	}
	if !slices.Equal(c.sizes, sizes) {
		t.Errorf("c.sizes is %v, but the database saw batches of %v commit: append the size of each committed batch", c.sizes, sizes)
	}

	// Closing the requests ends the committer.
	closeRequests(t, c, stopped, "", ": a receive from a closed channel gives ok == false; return nil then")
}

// TestExerciseGroupCommitWaitsAtMostMaxWait sends one booking on its own to
// a committer that would take 100: it must be written and answered once
// maxWait has passed, not kept waiting for company. Then ctx ends, and run
// must return.
func TestExerciseGroupCommitWaitsAtMostMaxWait(t *testing.T) {
	t.Parallel()
	db, w := watchedStore(t, 10)
	c := &committer{db: db, requests: make(chan request), maxBatch: 100, maxWait: 20 * time.Millisecond, reserve: w.reserve}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- c.run(ctx) }()

	for _, id := range []string{"alone-1", "alone-2"} {
		r := request{b: booking{id: id, concert: "concert", user: "user-" + id, seats: 1}, reply: make(chan result, 1)}
		w.add(r)
		send(t, c, w, []request{r}, stopped)
		select {
		case res := <-r.reply:
			if errors.Is(res.err, labkit.ErrTODO) {
				t.Fatal(res.err)
			}
			if res.err != nil || !res.booked {
				t.Fatalf("%s, alone at a concert of 10 seats, was answered booked=%t, %v; want booked", id, res.booked, res.err)
			}
		case err := <-stopped:
			t.Fatalf("run returned %v while %s waited for its answer", err, id)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s, sent alone to a committer with maxBatch 100 and maxWait 20 ms, has no answer after 10 s: stop collecting once maxWait has passed since the first request (a time.Timer in the select), and commit what you have", id)
		}
	}
	if commits := w.commits(); len(commits) != 2 {
		t.Errorf("the database saw these transactions commit: %s; want two, one per lone booking", describeBatches(commits))
	}

	// Ctrl-C: run returns ctx's error, promptly.
	cancel()
	select {
	case err := <-stopped:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("run returned %v after ctx ended; want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("run did not return within 5 s of ctx ending: watch ctx.Done() wherever run waits")
	}
}

// TestExerciseGroupCommitWaitIsFromTheFirstRequest sends a booking every
// maxWait/2 for 2 s to a committer that would take 100 at once: maxWait is
// measured from the first request of a batch, so the first answer must come
// after about maxWait, not when the trickle stops. The margins are wide:
// maxWait is 200 ms, and the first answer may take up to 1 s.
func TestExerciseGroupCommitWaitIsFromTheFirstRequest(t *testing.T) {
	t.Parallel()
	const maxWait, every, n = 200 * time.Millisecond, 100 * time.Millisecond, 20
	db, w := watchedStore(t, n)
	reqs := w.requests("t", slices.Repeat([]int{1}, n)...)
	c := &committer{db: db, requests: make(chan request), maxBatch: 100, maxWait: maxWait, reserve: w.reserve}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- c.run(ctx) }()

	// Trickle: one request, then one more at every tick, each taken by the
	// committer before the next.
	sent := make(chan time.Time, 1) // when the committer took the first
	trickled := make(chan error, 1)
	go func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i, r := range reqs {
			if i > 0 {
				<-tick.C
			}
			select {
			case c.requests <- r:
			case <-ctx.Done():
				trickled <- fmt.Errorf("the committer did not take %s: %w", r.b.id, ctx.Err())
				return
			}
			if i == 0 {
				sent <- time.Now()
			}
		}
		trickled <- nil
	}()

	var start time.Time
	select {
	case start = <-sent:
	case err := <-stopped:
		if errors.Is(err, labkit.ErrTODO) {
			t.Fatal(err)
		}
		t.Fatalf("run returned %v before it took the first request", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the committer did not take the first request within 10 s: it must receive from c.requests")
	}
	select {
	case res := <-reqs[0].reply:
		if errors.Is(res.err, labkit.ErrTODO) {
			t.Fatal(res.err)
		}
		if took := time.Since(start); took > 5*maxWait {
			t.Errorf("with a booking arriving every %v, the first one was answered after %v; maxWait is %v: measure maxWait from the first request of the batch (start the timer once, when it arrives), not from the latest (a timer Reset at every arrival keeps the batch open as long as requests trickle in)",
				every, took.Round(time.Millisecond), maxWait)
		}
		if res.err != nil || !res.booked {
			t.Errorf("%s was answered booked=%t, %v; want booked", reqs[0].b.id, res.booked, res.err)
		}
	case err := <-stopped:
		t.Fatalf("run returned %v while %s waited for its answer", err, reqs[0].b.id)
	case <-time.After(20 * time.Second):
		t.Fatalf("%s has no answer 20 s after the committer took it, with maxWait %v: stop collecting once maxWait has passed since the first request of the batch", reqs[0].b.id, maxWait)
	}

	// The rest is answered too, and run stops once c.requests is closed.
	if err := <-trickled; err != nil {
		t.Fatal(err)
	}
	awaitAnswers(t, reqs[1:], stopped, w)
	closeRequests(t, c, stopped, "", "")
}

// TestExerciseGroupCommitFinishesOnClose sends five bookings to a committer
// that would wait a minute for more, and closes c.requests at once: run
// must write and answer the five, then return nil.
func TestExerciseGroupCommitFinishesOnClose(t *testing.T) {
	t.Parallel()
	db, w := watchedStore(t, 10)
	reqs := w.requests("b", 1, 1, 1, 1, 1)
	c := &committer{db: db, requests: make(chan request), maxBatch: 100, maxWait: time.Minute, reserve: w.reserve}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- c.run(ctx) }()
	send(t, c, w, reqs, stopped)
	closeRequests(t, c, stopped, "", ", with maxWait a minute: a receive from a closed channel returns at once with ok == false; stop collecting then, write and answer the batch you hold, and return nil")
	if p := pending(reqs); len(p) > 0 {
		t.Fatalf("run returned, but %s got no answer: when c.requests closes while a batch is being collected, write and answer that batch before returning", shortList(p))
	}
	for i, res := range readAnswers(t, reqs) {
		if res.err != nil || !res.booked {
			t.Errorf("%s was answered booked=%t, %v; want booked", reqs[i].b.id, res.booked, res.err)
		}
	}
	checkStored(t, w, []string{"b-0001", "b-0002", "b-0003", "b-0004", "b-0005"}, 5)
}

// TestExerciseGroupCommitFailsTheWholeBatch makes the reserve of b-0010
// fail, among 32 bookings sent to a committer with batches of at most 8.
// Every caller of the batch that holds b-0010 must get the error, nothing
// of that batch may be stored, and the committer must go on with the next
// batches as if nothing happened.
func TestExerciseGroupCommitFailsTheWholeBatch(t *testing.T) {
	t.Parallel()
	db, w := watchedStore(t, 1000)
	w.failOn("b-0010")
	seats := make([]int, 32)
	for i := range seats {
		seats[i] = 1
	}
	reqs := w.requests("b", seats...)
	c := &committer{db: db, requests: make(chan request), maxBatch: 8, maxWait: 50 * time.Millisecond, reserve: w.reserve}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- c.run(ctx) }()
	send(t, c, w, reqs, stopped)
	awaitAnswers(t, reqs, stopped, w)
	answers := readAnswers(t, reqs)

	// The transaction that failed: the watch saw it reserve up to b-0010,
	// and roll back.
	var rolled []string
	for _, b := range w.rollbacks() {
		if slices.Contains(b, "b-0010") {
			rolled = b
		}
	}
	if rolled == nil {
		for _, b := range w.commits() {
			if slices.Contains(b, "b-0010") {
				t.Fatalf("the transaction holding b-0010 (%s) was committed although the reserve of b-0010 failed: return the error from commitBatch, and roll back", shortList(b))
			}
		}
		t.Fatalf("no transaction holding b-0010 was rolled back: when a reserve fails, roll the batch's transaction back (defer tx.Rollback())")
	}

	// The callers told of the error: one run of at most maxBatch bookings
	// in arrival order, b-0010 and all the transaction reserved among
	// them. Everyone else is booked (the concert has 1000 seats).
	var failed, stored []string
	first, last := -1, -1
	for i, r := range reqs {
		switch res := answers[i]; {
		case errors.Is(res.err, errInjected):
			failed = append(failed, r.b.id)
			if first < 0 {
				first = i
			}
			last = i
		case res.err != nil || !res.booked:
			t.Errorf("%s got booked=%t, err %v; want booked (the concert has seats for all), or, if it was in the batch that failed at b-0010, that error", r.b.id, res.booked, res.err)
		default:
			stored = append(stored, r.b.id)
		}
	}
	for _, id := range rolled {
		if !slices.Contains(failed, id) {
			t.Errorf("%s was reserved in the transaction that failed at b-0010, but its caller did not get the error: a failed batch fails every caller in it, with the error", id)
		}
	}
	if first >= 0 && (last-first+1 != len(failed) || len(failed) > 8) {
		t.Errorf("the callers told of the failure are %s: want the one batch that held b-0010, at most 8 bookings in a row", shortList(failed))
	}
	checkStored(t, w, stored, len(stored))
	closeRequests(t, c, stopped, ": a failed batch is answered, not the end of the committer", "")

	// c.sizes holds the committed batches only, as the database saw them.
	commits := w.commits()
	sizes := make([]int, len(commits))
	for i, b := range commits {
		sizes[i] = len(b)
	}
	if !slices.Equal(c.sizes, sizes) {
		t.Errorf("c.sizes is %v, but the database saw batches of %v commit (the one that held b-0010 rolled back): append the size of a batch only once its commit succeeded", c.sizes, sizes)
	}
}

// watch sees what the committer does with the database's one connection.
type watch struct {
	mu         sync.Mutex
	reqs       map[string]request // by booking ID, to look at their replies
	failID     string             // reserve fails for this booking
	current    []string           // reserved since the last commit or rollback
	committed  [][]string
	rolledBack [][]string
	early      []string // answered before their transaction committed
	reader     *sql.DB  // the test's own connection to the database
}

// watchedStore opens a database like the program's, in the test's own
// directory, with one concert of the given capacity, and puts a watch on
// its one connection.
func watchedStore(t *testing.T, capacity int) (*sql.DB, *watch) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "bookings.db")
	db, err := openStore(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := addConcert(ctx, db, "concert", capacity); err != nil {
		t.Fatal(err)
	}
	// The test reads through a connection of its own, so that it never
	// waits for the committer's.
	reader, err := sql.Open("sqlite", "file:"+path+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reader.Close() })
	w := &watch{reqs: map[string]request{}, reader: reader}
	// Hook into the connection: SQLite calls the commit hook inside
	// COMMIT, before the commit is done, and the rollback hook on a
	// rollback. The pool keeps the connection (one at most, and idle ones
	// are kept), so the hooks stay on it.
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = conn.Raw(func(dc any) error {
		hooks, ok := dc.(sqlite.HookRegisterer)
		if !ok {
			return fmt.Errorf("the SQLite driver's connection %T takes no hooks", dc)
		}
		hooks.RegisterCommitHook(w.onCommit)
		hooks.RegisterRollbackHook(w.onRollback)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	return db, w
}

// requests makes a request per seat count, prefix-0001 onwards, for the
// concert, and lets the watch see their replies.
func (w *watch) requests(prefix string, seats ...int) []request {
	var reqs []request
	for i, s := range seats {
		id := fmt.Sprintf("%s-%04d", prefix, i+1)
		r := request{b: booking{id: id, concert: "concert", user: "user-" + id, seats: s}, reply: make(chan result, 1)}
		w.add(r)
		reqs = append(reqs, r)
	}
	return reqs
}

func (w *watch) add(r request) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reqs[r.b.id] = r
}

func (w *watch) failOn(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failID = id
}

// reserve is reserveSeats, recorded, and failing for failID.
func (w *watch) reserve(ctx context.Context, tx *sql.Tx, b booking) (bool, error) {
	w.mu.Lock()
	w.current = append(w.current, b.id)
	fail := b.id == w.failID
	w.mu.Unlock()
	if fail {
		return false, fmt.Errorf("reserving %s: %w", b.id, errInjected)
	}
	return reserveSeats(ctx, tx, b)
}

// onCommit runs inside COMMIT: no booking of this transaction may have
// its answer yet.
func (w *watch) onCommit() int32 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.current) == 0 {
		return 0 // not one of the committer's batches
	}
	for _, id := range w.current {
		if r, ok := w.reqs[id]; ok && len(r.reply) > 0 {
			w.early = append(w.early, id)
		}
	}
	w.committed = append(w.committed, w.current)
	w.current = nil
	return 0 // go ahead and commit
}

func (w *watch) onRollback() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.current) > 0 {
		w.rolledBack = append(w.rolledBack, w.current)
	}
	w.current = nil
}

func (w *watch) commits() [][]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.committed)
}

func (w *watch) rollbacks() [][]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.rolledBack)
}

func (w *watch) answeredEarly() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.early)
}

// pending lists the IDs of the requests that have no answer yet.
func pending(reqs []request) []string {
	var ids []string
	for _, r := range reqs {
		if len(r.reply) == 0 {
			ids = append(ids, r.b.id)
		}
	}
	return ids
}

// send hands the requests to the committer in order, and fails the test
// if run returns instead of taking them.
func send(t *testing.T, c *committer, w *watch, reqs []request, stopped <-chan error) {
	t.Helper()
	for _, r := range reqs {
		select {
		case c.requests <- r:
		case err := <-stopped:
			if errors.Is(err, labkit.ErrTODO) {
				t.Fatal(err)
			}
			t.Fatalf("run returned %v before it took %s: it returns only when c.requests is closed or ctx ends", err, r.b.id)
		case <-time.After(10 * time.Second):
			t.Fatalf("the committer did not take %s within 10 s (transactions so far: %d committed, %d rolled back): it must receive from c.requests in a loop until it is closed; and if a batch failed, was its transaction rolled back? Until then the next batch cannot begin",
				r.b.id, len(w.commits()), len(w.rollbacks()))
		}
	}
}

// closeRequests closes c.requests and requires run to return nil within
// 10 s; errHint and lateHint end the failure's sentence when it returned
// an error or did not return (what to change).
func closeRequests(t *testing.T, c *committer, stopped <-chan error, errHint, lateHint string) {
	t.Helper()
	close(c.requests)
	select {
	case err := <-stopped:
		if errors.Is(err, labkit.ErrTODO) {
			t.Fatal(err)
		}
		if err != nil {
			t.Errorf("run returned %v after c.requests was closed; want nil%s", err, errHint)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("run did not return within 10 s of c.requests being closed%s", lateHint)
	}
}

// awaitAnswers waits, without reading any, until every request has its
// answer, and fails the test if run returns first or the answers do not
// come.
func awaitAnswers(t *testing.T, reqs []request, stopped <-chan error, w *watch) {
	t.Helper()
	brokertest.Eventually(t, 15*time.Second, func() error {
		select {
		case err := <-stopped:
			if errors.Is(err, labkit.ErrTODO) {
				t.Fatal(err)
			}
			t.Fatalf("run returned %v while %d bookings still waited for an answer", err, len(pending(reqs)))
		default:
		}
		if p := pending(reqs); len(p) > 0 {
			return fmt.Errorf("%d of %d bookings have no answer yet (%s); transactions committed: %d, rolled back: %d. If a batch failed, was its transaction rolled back? Until then the next batch cannot begin",
				len(p), len(reqs), shortList(p), len(w.commits()), len(w.rollbacks()))
		}
		return nil
	})
}

// readAnswers takes every request's answer, in order, and stops the test
// on a TODO.
func readAnswers(t *testing.T, reqs []request) []result {
	t.Helper()
	answers := make([]result, len(reqs))
	for i, r := range reqs {
		answers[i] = <-r.reply
		if errors.Is(answers[i].err, labkit.ErrTODO) {
			t.Fatal(answers[i].err)
		}
	}
	return answers
}

// checkStored compares the bookings the database holds with want, and the
// concert's count of seats with its bookings and with seats.
func checkStored(t *testing.T, w *watch, want []string, seats int) {
	db := w.reader
	t.Helper()
	ctx := context.Background()
	rows, err := db.QueryContext(ctx, `SELECT id FROM bookings ORDER BY id`)
	if err != nil {
		t.Fatalf("reading the bookings: %v", err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		got = append(got, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	brokertest.CheckIDs(t, "bookings stored (against those answered booked)", got, want)
	var capacity, booked, sum int
	if err := db.QueryRowContext(ctx, `SELECT capacity, booked, (SELECT COALESCE(SUM(seats), 0) FROM bookings) FROM concerts`).Scan(&capacity, &booked, &sum); err != nil {
		t.Fatalf("reading the concert: %v", err)
	}
	if booked > capacity {
		t.Errorf("the concert counts %d booked seats of %d: oversold by %d", booked, capacity, booked-capacity)
	}
	if booked != sum || booked != seats {
		t.Errorf("the concert counts %d booked seats and its bookings hold %d; want %d", booked, sum, seats)
	}
}

// describeBatches lists transactions as "[b-0001 b-0002], [b-0003]".
func describeBatches(batches [][]string) string {
	if len(batches) == 0 {
		return "none"
	}
	var parts []string
	for _, b := range batches {
		parts = append(parts, "["+shortList(b)+"]")
	}
	return strings.Join(parts, ", ")
}

// shortList keeps a long list of IDs readable.
func shortList(ids []string) string {
	if len(ids) > 10 {
		return fmt.Sprintf("%s ... (%d in all)", strings.Join(ids[:10], " "), len(ids))
	}
	return strings.Join(ids, " ")
}
