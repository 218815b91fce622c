package labtest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	expected := []string{"published 10 messages in 12.5 ms", "queue <*> got 3", "done"}
	tests := []struct {
		name, got, wantErr string
	}{
		{"numbers are wildcards", "published 7 messages in 3 ms\nqueue q.x got 42\ndone\n", ""},
		{"text must match", "published 7 messages in 3 ms\nqueue q.x got 42\nfinished\n", `line 3: expected "done", got "finished"`},
		{"number where text was", "published x messages in 3 ms\nqueue q got 1\ndone", "line 1"},
		{"output too short", "published 7 messages in 3 ms\n", "but the output ended"},
		{"output too long", "published 7 messages in 3 ms\nqueue q got 1\ndone\nextra\n", `goes on with "extra"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Match(expected, tc.got)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected mismatch: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestExpectedOutput(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "README.md")
	doc := "# Lab\n\n```sh\ngo run .\n```\n\n## Expected output\n\nText.\n\n```text\nline one\nline 2\n```\n\n## Later\n```text\nnot this\n```\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ExpectedOutput(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "|") != "line one|line 2" {
		t.Fatalf("ExpectedOutput = %q", got)
	}
	if err := os.WriteFile(path, []byte("# Lab\nno block\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ExpectedOutput(path); err == nil {
		t.Fatal("a file without an expected-output block gave no error")
	}
}

// TestRefusedBeforeDialingKafka runs the Kafka variant against a fake lab
// that refuses -topic events before it dials and "dials" otherwise: the
// refusal passes, and a flag the lab lets through to the dial fails the
// check, as does a lab that prints before it refuses.
func TestRefusedBeforeDialingKafka(t *testing.T) {
	lab := func(printFirst bool) func(ctx context.Context, args []string, out io.Writer) error {
		return func(ctx context.Context, args []string, out io.Writer) error {
			fs := flag.NewFlagSet("lab", flag.ContinueOnError)
			brokers := fs.String("brokers", "", "")
			topic := fs.String("topic", "lab.events", "")
			if err := fs.Parse(args); err != nil {
				return err
			}
			if printFirst {
				fmt.Fprintln(out, "brokers:", *brokers)
			}
			if *topic == "events" {
				return errors.New("-topic events is the capstone's topic")
			}
			return fmt.Errorf("connecting to Kafka at %s: no broker answers", *brokers)
		}
	}
	RefusedBeforeDialingKafka(t, lab(false), BadFlags{Args: []string{"-topic", "events"}, Want: "capstone's topic"})

	for name, tc := range map[string]struct {
		run  func(ctx context.Context, args []string, out io.Writer) error
		args []string
	}{
		"let through to the dial": {lab(false), []string{"-topic", ""}},
		"printed before refusing": {lab(true), []string{"-topic", "events"}},
	} {
		rec := &recorder{TB: t}
		refusedBefore(rec, tc.run, []string{"-brokers", "127.0.0.1:1"}, []BadFlags{{Args: tc.args, Want: "capstone's topic"}})
		if len(rec.errors) == 0 {
			t.Errorf("%s: the check passed", name)
		}
	}
}

// recorder keeps the failures a check reports instead of failing the test.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
