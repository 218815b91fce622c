package labtest

import (
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
