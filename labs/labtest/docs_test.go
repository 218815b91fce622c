package labtest

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDocsNameTestsThatExist checks that every test, benchmark, fuzz
// test or example the docs name in backquotes (`TestName`, or
// `TestName/subtest`) is a function of some _test.go file: a learner who
// runs go test -run with a name the docs give, after the test was
// renamed, would run nothing and see "ok".
func TestDocsNameTestsThatExist(t *testing.T) {
	root := filepath.Join("..", "..")
	defined := map[string]bool{}
	funcRE := regexp.MustCompile(`(?m)^func ((?:Test|Benchmark|Fuzz|Example)\w*)\(`)
	var docs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != root {
			return filepath.SkipDir
		}
		switch {
		case strings.HasSuffix(path, "_test.go"):
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range funcRE.FindAllSubmatch(b, -1) {
				defined[string(m[1])] = true
			}
		case strings.HasSuffix(path, ".md"):
			docs = append(docs, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	namedRE := regexp.MustCompile("`((?:Test|Benchmark|Fuzz|Example)[A-Z]\\w*)[/`]")
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		var missing []string
		for _, m := range namedRE.FindAllSubmatch(b, -1) {
			if name := string(m[1]); !defined[name] && !isPrefix(name, defined) && !slices.Contains(missing, name) {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			rel, _ := filepath.Rel(root, doc)
			t.Errorf("%s names tests that no _test.go defines: %s", rel, strings.Join(missing, ", "))
		}
	}
}

// isPrefix reports whether name begins the name of a defined test, as a
// go test -run pattern such as TestExercise does.
func isPrefix(name string, defined map[string]bool) bool {
	for d := range defined {
		if strings.HasPrefix(d, name) {
			return true
		}
	}
	return false
}
