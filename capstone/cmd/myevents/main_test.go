package main

import (
	"context"
	"errors"
	"net"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labtest"
)

// TestMain removes the containers brokertest started, if any.
func TestMain(m *testing.M) { brokertest.Main(m) }

// The IDs docs/capstone.md shows; a run's own IDs are replaced by them
// before the output is compared.
const (
	docLocationID = "OCR53HOLXH6TNJQTZIXONTMZ33"
	docEventID    = "MJTLNVLLL5EXNOMQ32437VCDRC"
)

// free ports: the defaults (8181, 8282, 8080) may be taken by a service that runs
// on this machine.
var freePorts = []string{"-events-listen", "127.0.0.1:0", "-bookings-listen", "127.0.0.1:0", "-ui-listen", "127.0.0.1:0"}

// TestStory runs the demo as a newcomer does, serving until "Ctrl-C", and
// checks what it printed against the expected output in docs/capstone.md.
func TestStory(t *testing.T) {
	r := start(t, freePorts)

	// Wait until it serves, then press "Ctrl-C".
	r.await(t, `"user_id":"you"}'`)
	if err := r.interrupt(t, 30*time.Second); err != nil {
		t.Fatalf("run after Ctrl-C: %v\nstderr:\n%s", err, r.stderr.String())
	}

	got := r.out.String()
	locID := find(t, got, `POST /locations -> 201 id=(\S+)`)
	evID := find(t, got, `POST /events -> 201 id=(\S+)`)
	labtest.CheckOutput(t, got, []string{"../../../docs/capstone.md", "../../../README.md"}, locID, docLocationID, evID, docEventID)
	if strings.Contains(r.stderr.String(), "level=ERROR") {
		t.Errorf("errors were logged:\n%s", r.stderr.String())
	}
}

// running is a run of myevents in the background.
type running struct {
	out, stderr labtest.Buffer
	cancel      context.CancelFunc // "Ctrl-C"
	done        chan error         // gets what run returned
}

// start runs myevents with args in the background, until the test ends.
func start(t *testing.T, args []string) *running {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- run(ctx, args, &r.out, &r.stderr) }()
	return r
}

// await waits until run printed want, failing the test if run ends
// first.
func (r *running) await(t *testing.T, want string) {
	t.Helper()
	brokertest.Eventually(t, 60*time.Second, func() error {
		select {
		case err := <-r.done:
			t.Fatalf("run ended before printing %q: %v\n%s\nstderr:\n%s", want, err, r.out.String(), r.stderr.String())
		default:
		}
		if !strings.Contains(r.out.String(), want) {
			return errNotYet
		}
		return nil
	})
}

// interrupt presses "Ctrl-C" and returns what run returned, failing the
// test if it takes longer than timeout.
func (r *running) interrupt(t *testing.T, timeout time.Duration) error {
	t.Helper()
	r.cancel()
	return brokertest.Receive(t, r.done, timeout, "run did not stop after Ctrl-C")
}

// TestStoryOnly: with -story-only it stops by itself after the story.
func TestStoryOnly(t *testing.T) {
	var out, stderr labtest.Buffer
	err := run(context.Background(), append([]string{"-story-only"}, freePorts...), &out, &stderr)
	if err != nil {
		t.Fatalf("run -story-only: %v\nstderr:\n%s", err, stderr.String())
	}
	got := out.String()
	if strings.Contains(got, "Serving until Ctrl-C") || !strings.HasSuffix(got, "everything in it are gone\n") {
		t.Errorf("-story-only output does not end with the story and the stop line:\n%s", got)
	}
}

// TestInterruptedStory: Ctrl-C in the middle of the story stops everything
// and reports it, without hanging.
func TestInterruptedStory(t *testing.T) {
	r := start(t, freePorts)
	r.await(t, "1. EventService")
	if err := r.interrupt(t, 30*time.Second); err == nil {
		t.Fatal("run returned nil after an interrupted story")
	}
}

// TestBusyPort: a taken port is one clear error that names the flag to
// move it with; a taken live view port is found before anything starts.
func TestBusyPort(t *testing.T) {
	for _, tt := range []struct {
		flag, listening string
		others          []string // the other ports
		quiet           bool     // nothing starts before the error
	}{
		{"-bookings-listen", "listening for HTTP on ", []string{"-events-listen", "127.0.0.1:0", "-ui-listen", "127.0.0.1:0"}, false},
		{"-ui-listen", "listening for the live view on ", nil, true},
	} {
		t.Run(tt.flag, func(t *testing.T) {
			busy, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer busy.Close()
			var out, stderr labtest.Buffer
			err = run(context.Background(), append([]string{tt.flag, busy.Addr().String()}, tt.others...), &out, &stderr)
			if err == nil || !strings.Contains(err.Error(), tt.listening+busy.Addr().String()) ||
				!strings.Contains(err.Error(), "choose another with "+tt.flag) {
				t.Fatalf("error = %v, want one about the port that names %s", err, tt.flag)
			}
			if tt.quiet && out.String() != "" {
				t.Errorf("something started before the error:\n%s", out.String())
			}
		})
	}
}

var errNotYet = errors.New("not yet")

// find returns the first submatch of pattern in s.
func find(t *testing.T, s, pattern string) string {
	t.Helper()
	m := regexp.MustCompile(pattern).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("the output has no line like %q:\n%s", pattern, s)
	}
	return m[1]
}

// TestBadFlags: flags myevents cannot use are one sentence each.
func TestBadFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-broker", "nats"}, `unknown broker "nats": use -broker kafka (embedded) or -broker amqp (RabbitMQ)`},
		{[]string{"-broker", "amqp", "-story-only"}, "-story-only: the story plays on the embedded Kafka"},
		{[]string{"serve"}, `unexpected argument "serve"`},
	} {
		var out, stderr labtest.Buffer
		err := run(context.Background(), append(tt.args, freePorts...), &out, &stderr)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run %v: error = %v, want %q", tt.args, err, tt.want)
		}
	}
}

// TestAMQPConnectionErrorsSayWhy: on RabbitMQ, a wrong password is named
// as such (it was "is it running?"), and Ctrl-C while the broker does not
// answer stops the demo at once (its first dial had no timeout, 30 s).
func TestAMQPConnectionErrorsSayWhy(t *testing.T) {
	r := brokertest.AMQP(t)
	u, err := url.Parse(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), "not-the-password")
	t.Setenv("AMQP_URL", u.String())
	var out, stderr labtest.Buffer
	err = run(context.Background(), append([]string{"-broker", "amqp"}, freePorts...), &out, &stderr)
	if err == nil || !strings.Contains(err.Error(), "refused the user name or password") || strings.Contains(err.Error(), "is it running") {
		t.Errorf("a wrong password: run = %v, want the refused password named", err)
	}

	// A port that accepts and never answers.
	t.Setenv("AMQP_URL", "amqp://guest:guest@"+brokertest.SilentPort(t)+"/")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, append([]string{"-broker", "amqp"}, freePorts...), &out, &stderr) }()
	cancel() // Ctrl-C
	if err := brokertest.Receive(t, done, 5*time.Second, "run did not stop on Ctrl-C while RabbitMQ did not answer"); err == nil {
		t.Error("run returned nil after Ctrl-C before it could connect")
	}
}

// TestURLFlag: with -broker amqp, -url chooses the broker, over
// AMQP_URL, as the services' own -url does; the error for a broker that
// is not there names that URL and tells to set AMQP_URL or -url, which
// myevents did not have.
func TestURLFlag(t *testing.T) {
	t.Setenv("AMQP_URL", "amqp://guest:guest@"+brokertest.ClosedPort(t)+"/env")
	closed := "amqp://guest:guest@" + brokertest.ClosedPort(t) + "/flag"
	var out, stderr labtest.Buffer
	err := run(context.Background(), append([]string{"-broker", "amqp", "-url", closed}, freePorts...), &out, &stderr)
	if err == nil || !strings.Contains(err.Error(), brokertest.Redact(closed)) {
		t.Errorf("run -url %s = %v, want an error naming that URL", brokertest.Redact(closed), err)
	}
}
