// Command loadtest measures how many bookings per second BookingService
// sells, and how long each takes (p50, p99), over real HTTP with a real
// broker: every booking is stored with its event.booked in the outbox
// before its 201 (with the one-at-a-time path, -group 1, also confirmed by
// the broker), emitted, and heard back by BookingService.
//
// By default it starts both services in this process, on names of its own
// (an exchange and queue, or a topic and group, deleted at the end), like
// the end-to-end tests. With -events-url and -bookings-url it loads
// services that already run instead (for example the compose file's).
//
// Usage:
//
//	go run ./capstone/cmd/loadtest -broker amqp                  # local RabbitMQ, SQLite files in a temporary directory
//	go run ./capstone/cmd/loadtest -broker kafka                 # embedded Kafka (or -brokers / KAFKA_BROKERS)
//	go run ./capstone/cmd/loadtest -broker kafka -db memory
//	go run ./capstone/cmd/loadtest -broker amqp -db postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//	go run ./capstone/cmd/loadtest -events-url http://localhost:8181 -bookings-url http://localhost:8282
//	go run ./capstone/cmd/loadtest -broker amqp -n 8000 -c 64 -warmup 500 -compare
//
// Flags: -n bookings (default 2000), -c concurrent clients (default 16),
// -warmup bookings before measuring (default 200), -broker, -url, -brokers,
// -db (sqlite, memory, or a postgres:// URL: a schema of its own is
// created there and dropped at the end), -group (bookings BookingService
// sells per transaction at most; 1 is one at a time), -cpuprofile FILE.
//
// -compare measures, in one run: a bare loop of one SQLite transaction
// per booking (the rate one commit per booking allows; before and after
// the services), the same loop with 16 bookings per transaction, the
// service's one-at-a-time path (-group 1) and its group commit, and prints
// their rates, latencies and ratios (compare.go).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver

	"example.com/myevents/capstone/internal/app"
)

func main() { app.Main(run) }

// settings are the load test's flags.
type settings struct {
	n, c, warmup int
	broker       string
	amqpURL      string
	brokers      string
	db           string
	eventsURL    string
	bookingsURL  string
	group        int
	compare      bool
	cpuprofile   string
}

func run(ctx context.Context, args []string, out, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var s settings
	fs.IntVar(&s.n, "n", 2000, "bookings to measure (one seat each)")
	fs.IntVar(&s.c, "c", 16, "concurrent clients")
	fs.IntVar(&s.warmup, "warmup", 200, "bookings sent before measuring, on another event")
	// The help text shows the built-in defaults, never the environment's
	// values: AMQP_URL may hold a password. The environment is read after
	// parsing, for the flags not given.
	fs.StringVar(&s.broker, "broker", app.AMQP, "amqp or kafka (env BROKER)")
	fs.StringVar(&s.amqpURL, "url", app.DefaultAMQPURL, "AMQP URL of RabbitMQ (env AMQP_URL)")
	fs.StringVar(&s.brokers, "brokers", "", "Kafka brokers, comma-separated (default $KAFKA_BROKERS, else an embedded Kafka)")
	fs.StringVar(&s.db, "db", "sqlite", "store of both services: sqlite (files in a temporary directory), memory, or a postgres:// URL")
	fs.StringVar(&s.eventsURL, "events-url", "", "load an EventService that runs already (with -bookings-url)")
	fs.StringVar(&s.bookingsURL, "bookings-url", "", "load a BookingService that runs already (with -events-url)")
	fs.IntVar(&s.group, "group", 0, "bookings BookingService sells per transaction at most (0: its default; 1: one at a time)")
	fs.BoolVar(&s.compare, "compare", false, "measure a SQLite loop of one transaction per booking, the one-at-a-time path (-group 1) and the group path, and print their ratios")
	fs.StringVar(&s.cpuprofile, "cpuprofile", "", "write a CPU profile of the measured bookings (of the group path with -compare) to this file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for name, env := range map[string]struct {
		value *string
		env   string
	}{"broker": {&s.broker, "BROKER"}, "url": {&s.amqpURL, "AMQP_URL"}, "brokers": {&s.brokers, "KAFKA_BROKERS"}} {
		if v := os.Getenv(env.env); !given[name] && v != "" {
			*env.value = v
		}
	}
	if s.n < 1 || s.c < 1 || s.warmup < 0 || s.group < 0 {
		return fmt.Errorf("-n and -c must be at least 1, -warmup and -group at least 0")
	}
	if s.compare && (s.eventsURL != "" || s.bookingsURL != "") {
		return fmt.Errorf("-compare starts its own services: leave out -events-url and -bookings-url")
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	if s.compare {
		return compare(ctx, s, out, log)
	}
	m, err := measure(ctx, s, log)
	if err != nil {
		return err
	}
	m.print(out, s)
	return nil
}

// result is what one round of bookings measured.
type result struct {
	created   int
	statuses  map[int]int
	latencies []time.Duration
	elapsed   time.Duration
}

// hammer books 1 seat n times from c clients at once.
func hammer(ctx context.Context, client *http.Client, bookings, eventID string, n, c int) (result, error) {
	res := result{statuses: map[int]int{}, latencies: make([]time.Duration, 0, n)}
	if n == 0 {
		return res, nil
	}
	jobs := make(chan int)
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		firstErr error
	)
	start := time.Now()
	for range c {
		wg.Go(func() {
			for i := range jobs {
				t0 := time.Now()
				status, err := post(ctx, client, bookings+"/events/"+eventID+"/bookings", fmt.Sprintf(`{"seats":1,"user_id":"load-%d"}`, i))
				d := time.Since(t0)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				res.statuses[status]++
				if status == http.StatusCreated {
					res.created++
					res.latencies = append(res.latencies, d)
				}
				mu.Unlock()
			}
		})
	}
	for i := range n {
		select {
		case jobs <- i:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()
	res.elapsed = time.Since(start)
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr == nil && res.created != n {
		firstErr = fmt.Errorf("%d of %d bookings got 201: %v", res.created, n, res.statuses)
	}
	return res, firstErr
}

// post sends one booking and returns the status.
func post(ctx context.Context, client *http.Client, url, body string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// pct returns the p-th percentile of sorted latencies.
func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p+99)/100 - 1
	return sorted[max(i, 0)].Round(10 * time.Microsecond)
}

// newEvent creates a location with one hall of capacity seats and an event
// there, and waits until BookingService knows it.
func newEvent(ctx context.Context, client *http.Client, events, bookings, name string, capacity int) (string, error) {
	var loc, ev struct{ ID string }
	body := fmt.Sprintf(`{"name":"Load %s","halls":[{"name":"Main","capacity":%d}]}`, name, capacity)
	if err := call(ctx, client, "POST", events+"/locations", body, http.StatusCreated, &loc); err != nil {
		if ctx.Err() == nil && notListening(err) {
			return "", fmt.Errorf("%w (is EventService running there? start the services, or point -events-url and -bookings-url at them)", err)
		}
		return "", err
	}
	body = fmt.Sprintf(`{"name":"Load %s","location_id":%q,"hall":"Main","start_date":1795118400,"end_date":1795129200}`, name, loc.ID)
	if err := call(ctx, client, "POST", events+"/events", body, http.StatusCreated, &ev); err != nil {
		return "", err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := call(ctx, client, "GET", bookings+"/events/"+ev.ID, "", http.StatusOK, nil)
		if err == nil {
			return ev.ID, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if ctx.Err() == nil && notListening(err) {
				err = fmt.Errorf("%w (is BookingService running there? start it, or point -bookings-url at it)", err)
			}
			return "", fmt.Errorf("waiting for BookingService to hear of event %s: %w", ev.ID, err)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// notListening reports whether err is a connection that could not be
// made: nothing listens at the address, or no host answers there. A name
// that does not resolve is not one: its error says so itself.
func notListening(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	return errors.As(err, &op) && op.Op == "dial" && !errors.As(err, &dns)
}

// call sends a request, requires status want and decodes the answer into
// into (unless nil).
func call(ctx context.Context, client *http.Client, method, url, body string, want int, into any) error {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s = %d %s, want %d", method, url, resp.StatusCode, bytes.TrimSpace(b), want)
	}
	if into != nil {
		return json.Unmarshal(b, into)
	}
	return nil
}
