// Package labtest keeps the lab documentation honest: a lab test runs the
// program and checks that what it printed matches the "Expected output"
// block of the lab's README.md and of its docs chapter.
//
// In an expected block, every number is a wildcard for any number (rates and
// offsets differ from run to run) and <*> stands for any text on that line.
// Everything else must match exactly, line by line.
//
// It also checks that a lab refuses bad flags before it dials
// (RefusedBeforeDialing for RabbitMQ, RefusedBeforeDialingKafka for
// Kafka).
package labtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

// ExpectedOutput returns the lines of the first fenced block that follows a
// heading containing "Expected output" in the Markdown file at path.
func ExpectedOutput(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close()
	var (
		lines     []string
		inSection bool
		inBlock   bool
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case inBlock && strings.HasPrefix(line, "```"):
			return lines, nil
		case inBlock:
			lines = append(lines, line)
		case strings.HasPrefix(line, "#"):
			inSection = strings.Contains(strings.ToLower(line), "expected output")
		case inSection && strings.HasPrefix(line, "```"):
			inBlock = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if inBlock {
		return nil, fmt.Errorf("%s: the expected-output block is not closed", path)
	}
	return nil, fmt.Errorf("%s has no fenced block under an \"Expected output\" heading", path)
}

var number = regexp.MustCompile(`[0-9]+(\.[0-9]+)?`)

// pattern turns one expected line into a regular expression.
func pattern(line string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i, part := range strings.Split(line, "<*>") {
		if i > 0 {
			b.WriteString(".*")
		}
		last := 0
		for _, m := range number.FindAllStringIndex(part, -1) {
			b.WriteString(regexp.QuoteMeta(part[last:m[0]]))
			b.WriteString(`[0-9]+(\.[0-9]+)?`)
			last = m[1]
		}
		b.WriteString(regexp.QuoteMeta(part[last:]))
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// Match reports the first difference between the expected lines and what a
// program printed, or nil when they match.
func Match(expected []string, got string) error {
	gotLines := strings.Split(strings.TrimRight(got, "\n"), "\n")
	for i, want := range expected {
		if i >= len(gotLines) {
			return fmt.Errorf("line %d: expected %q, but the output ended", i+1, want)
		}
		if !pattern(want).MatchString(gotLines[i]) {
			return fmt.Errorf("line %d: expected %q, got %q", i+1, want, gotLines[i])
		}
	}
	if len(gotLines) > len(expected) {
		return fmt.Errorf("line %d: the output goes on with %q, which the expected output does not show", len(expected)+1, gotLines[len(expected)])
	}
	return nil
}

// CheckOutput fails the test unless got matches the "Expected output" block
// of every Markdown file given (typically the lab's README.md and its docs
// chapter). replacements are old, new pairs applied to got first, so that
// the unique names a test uses read like the defaults the docs show.
func CheckOutput(t testing.TB, got string, files []string, replacements ...string) {
	t.Helper()
	if len(replacements)%2 != 0 {
		t.Fatalf("labtest: replacements must come in old, new pairs")
	}
	normalised := strings.NewReplacer(replacements...).Replace(got)
	for _, file := range files {
		expected, err := ExpectedOutput(file)
		if err != nil {
			t.Fatalf("labtest: %v", err)
		}
		if err := Match(expected, normalised); err != nil {
			t.Errorf("the output does not match %s: %v\n--- output (after replacements) ---\n%s", file, err, normalised)
		}
	}
}

// CancelOn collects what a lab prints and cancels the run's context as soon
// as the output contains Marker: a Ctrl-C at a known point of the run, for
// tests that check a lab stops cleanly and leaves nothing behind.
type CancelOn struct {
	bytes.Buffer
	Marker string
	Cancel context.CancelFunc
}

// Write keeps p and cancels once the marker has been printed.
func (c *CancelOn) Write(p []byte) (int, error) {
	n, err := c.Buffer.Write(p)
	if strings.Contains(c.Buffer.String(), c.Marker) {
		c.Cancel()
	}
	return n, err
}

// Buffer is a bytes.Buffer that a running program (or a service's
// goroutines) writes to while the test reads it.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// BadFlags is a command line a lab must refuse, and what its error says.
type BadFlags struct {
	Args []string
	Want string // a part of the error
}

// RefusedBeforeDialing runs a lab's run with each command line, -url
// pointing at a port nobody listens on, and requires an error containing
// its Want: a flag the broker would turn into a confusing error is refused
// first, with a sentence that says what to change, before anything is
// dialed (a dial would fail with the connection error instead).
func RefusedBeforeDialing(t *testing.T, run func(ctx context.Context, args []string, out io.Writer) error, cases ...BadFlags) {
	t.Helper()
	refusedBefore(t, run, []string{"-url", "amqp://guest:guest@127.0.0.1:1/"}, cases)
}

// NameFlags are the command lines labkit.CheckNames refuses, for the
// RefusedBeforeDialing of a lab that calls it: an empty -queue or
// -exchange, one starting with "amq.", and the capstone's exchange.
func NameFlags() []BadFlags {
	return append([]BadFlags{
		{Args: []string{"-queue", ""}, Want: "-queue must name a queue"},
		{Args: []string{"-queue", "amq.mine"}, Want: "-queue must name a queue"},
	}, ExchangeFlags()...)
}

// ExchangeFlags are the command lines labkit.CheckExchange refuses (and
// CheckNames with them): an empty -exchange, one starting with "amq.", and
// the capstone's exchange.
func ExchangeFlags() []BadFlags {
	return []BadFlags{
		{Args: []string{"-exchange", ""}, Want: "-exchange must name an exchange"},
		{Args: []string{"-exchange", "amq.mine"}, Want: "-exchange must name an exchange"},
		{Args: []string{"-exchange", "events"}, Want: "-exchange events is the capstone's exchange"},
	}
}

// TopicFlags are the command lines labkit.CheckTopic refuses, for the
// RefusedBeforeDialingKafka of a lab that calls it: an empty -topic, one
// with a space, "..", one of 250 characters, the capstone's topic and its
// dead-letter topic.
func TopicFlags() []BadFlags {
	return []BadFlags{
		{Args: []string{"-topic", ""}, Want: "-topic must name a topic"},
		{Args: []string{"-topic", "my topic"}, Want: "-topic must name a topic"},
		{Args: []string{"-topic", ".."}, Want: "-topic must name a topic"},
		{Args: []string{"-topic", strings.Repeat("t", 250)}, Want: "-topic must name a topic"},
		{Args: []string{"-topic", "events"}, Want: "-topic events is the capstone's topic"},
		{Args: []string{"-topic", "events.dlq"}, Want: "-topic events.dlq is the capstone's dead-letter topic"},
	}
}

// RefusedBeforeDialingKafka is RefusedBeforeDialing for a Kafka lab: each
// command line runs with -brokers pointing at a port nobody listens on, so
// a flag that is not refused before connecting fails with "no broker
// answers" instead of its Want.
func RefusedBeforeDialingKafka(t *testing.T, run func(ctx context.Context, args []string, out io.Writer) error, cases ...BadFlags) {
	t.Helper()
	refusedBefore(t, run, []string{"-brokers", "127.0.0.1:1"}, cases)
}

// refusedBefore runs each command line after nowhere, the flag that points
// the lab at a broker that is not there, and requires an error containing
// its Want; a refused command line prints nothing.
func refusedBefore(t testing.TB, run func(ctx context.Context, args []string, out io.Writer) error, nowhere []string, cases []BadFlags) {
	t.Helper()
	for _, tc := range cases {
		args := append(slices.Clone(nowhere), tc.Args...)
		var out bytes.Buffer
		err := run(t.Context(), args, &out)
		switch {
		case err == nil || !strings.Contains(err.Error(), tc.Want):
			t.Errorf("run %q = %v, want an error containing %q", tc.Args, err, tc.Want)
		case out.Len() > 0:
			t.Errorf("run %q printed %q before it refused the flags", tc.Args, out.String())
		}
	}
}
