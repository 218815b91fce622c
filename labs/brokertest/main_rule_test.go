package brokertest

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestEveryPackageThatGetsABrokerCallsMain: a test package that asks for
// a broker may start a container, which only Main removes when the
// package's tests end; with Ryuk off (Podman), nothing else does. Every
// such package in this module must call brokertest.Main from TestMain.
func TestEveryPackageThatGetsABrokerCallsMain(t *testing.T) {
	root := filepath.Join("..", "..")
	asks := regexp.MustCompile(`brokertest\.(AMQP|Kafka|PrivateAMQP|CheckDialErrors)\(`)
	callsMain := regexp.MustCompile(`brokertest\.Main\(`)
	need := map[string]bool{} // package directory -> calls Main
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dir := filepath.Dir(path)
		switch {
		case callsMain.Match(src):
			need[dir] = true
		case asks.Match(src) && !need[dir]:
			need[dir] = false
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(need) < 10 {
		t.Fatalf("found only %d packages that ask for a broker under %s; is the module root right?", len(need), root)
	}
	var missing []string
	for dir, ok := range need {
		if !ok {
			missing = append(missing, dir)
		}
	}
	slices.Sort(missing)
	for _, dir := range missing {
		t.Errorf("%s asks brokertest for a broker but no TestMain calls brokertest.Main: add\n\tfunc TestMain(m *testing.M) { brokertest.Main(m) }", dir)
	}
}
