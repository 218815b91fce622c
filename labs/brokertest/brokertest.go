// Package brokertest hands each test a real RabbitMQ or Kafka broker.
//
// Every lab test and every capstone test gets its broker here, always in the
// same order:
//
//  1. AMQP_URL / KAFKA_BROKERS set: use them. Unreachable is a failure with a
//     clear message, never a skip.
//  2. A Docker engine answers: start a container with testcontainers-go
//     (pinned images), shared by the tests of one package; its logs are
//     printed when a test fails.
//  3. No Docker: Kafka comes from an embedded in-process cluster (kfake);
//     RabbitMQ from amqp://guest:guest@127.0.0.1:5672/ if that answers.
//  4. Nothing: the test is skipped with a message that says how to get a
//     broker, or fails when the CI environment variable is set, so that CI
//     can never pass by skipping.
//
// Four environment variables change that, for a machine whose engine has
// other images, or for a run that must take one path only:
//
//   - BROKERTEST_RABBITMQ_IMAGE and BROKERTEST_KAFKA_IMAGE name the images
//     to start instead of [RabbitMQImage] and [KafkaImage] (a RabbitMQ
//     image must print "Server startup complete" when it is ready and let
//     guest/guest in from outside the container).
//   - BROKERTEST_RABBITMQ (auto, environment, container or local) and
//     BROKERTEST_KAFKA (auto, environment, container or embedded) force one
//     backend. A forced backend that is not there is a failure, never a
//     skip; auto, or unset, is the order above. A forced backend other than
//     environment together with AMQP_URL (or KAFKA_BROKERS) is a
//     contradiction, and a failure that says so.
//
// One more, BROKERTEST_RABBITMQ_REUSE, names a RabbitMQ container that
// every package's tests share instead of starting one each: the first
// package to need it starts it, the others find it by name, and it stays
// after the tests (remove it with `docker rm -f NAME` or `podman rm -f
// NAME`). It needs TESTCONTAINERS_RYUK_DISABLED=true, as our Podman
// set-up has: Ryuk would remove the container under a later run. It saves
// a broker's start per package, which on a 2-core machine is most of a
// small package's test time. A container of that name from another image
// is a failure that says so. Tests that stop or cut off their broker
// still get one of their own ([PrivateAMQP]).
//
// Each test isolates itself with unique names from [Name], so one broker
// serves all tests, parallel ones included. A package that may start
// containers calls [Main] from its TestMain so they are removed at the end.
package brokertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
)

// Backend says where a broker came from.
type Backend string

// The backends, in the order they are tried.
const (
	FromEnvironment Backend = "environment" // AMQP_URL or KAFKA_BROKERS
	FromContainer   Backend = "container"   // testcontainers-go
	FromLocal       Backend = "local"       // RabbitMQ on 127.0.0.1:5672
	FromEmbedded    Backend = "embedded"    // in-process Kafka (kfake)
)

// Pinned container images, used unless BROKERTEST_RABBITMQ_IMAGE or
// BROKERTEST_KAFKA_IMAGE names another.
const (
	RabbitMQImage = "rabbitmq:4.1-management"
	KafkaImage    = "apache/kafka:4.1.0"
)

// The environment variables that steer the selection (see the package
// documentation).
const (
	EnvRabbitMQ      = "BROKERTEST_RABBITMQ"
	EnvKafka         = "BROKERTEST_KAFKA"
	EnvRabbitMQImage = "BROKERTEST_RABBITMQ_IMAGE"
	EnvKafkaImage    = "BROKERTEST_KAFKA_IMAGE"
	EnvRabbitMQReuse = "BROKERTEST_RABBITMQ_REUSE"
)

// dockerProbeTimeout bounds how long we wait for a Docker engine that exists
// but does not answer.
const dockerProbeTimeout = 5 * time.Second

// probes are the facts the selection depends on. Tests of this package
// replace them with fakes; everything else uses realProbes.
type probes struct {
	getenv func(string) string
	docker func(context.Context) error
	amqp   func(ctx context.Context, url string) error        // dial and log in
	kafka  func(ctx context.Context, brokerList string) error // metadata request
}

// choice is the outcome of a selection.
type choice struct {
	backend Backend
	target  string // AMQP URL or comma-separated Kafka brokers; empty for container/embedded
	image   string // the image to start, for a container
	reuse   string // the name of a container to share between packages (BROKERTEST_RABBITMQ_REUSE)
	reason  string
}

// forcedBackend reads a BROKERTEST_RABBITMQ or BROKERTEST_KAFKA value: ""
// means the usual order (unset, empty or auto), else one of allowed.
func forcedBackend(getenv func(string) string, key string, allowed ...Backend) (Backend, error) {
	v := strings.ToLower(strings.TrimSpace(getenv(key)))
	if v == "" || v == "auto" {
		return "", nil
	}
	names := []string{"auto"}
	for _, b := range allowed {
		if v == string(b) {
			return b, nil
		}
		names = append(names, string(b))
	}
	return "", fmt.Errorf("%s=%s is not one of %s; fix or unset it", key, getenv(key), strings.Join(names, ", "))
}

// chooseImage returns the image that the environment variable key names,
// else the pinned one, and says where it came from.
func chooseImage(getenv func(string) string, key, pinned string) (name, from string) {
	if v := strings.TrimSpace(getenv(key)); v != "" {
		return v, "image " + v + " from " + key
	}
	return pinned, "image " + pinned
}

// noEngine is the sentence for a forced container backend without an
// engine.
func noEngine(key string, err error) error {
	return fmt.Errorf("%s=container, but no container engine answers (%s): start Docker, "+
		"or Podman's API service with DOCKER_HOST pointing at its socket "+
		"(on Debian, `eval \"$(scripts/podman-up.sh)\"` does both), or unset %s", key, firstLine(err), key)
}

// errNoBroker means no backend is available; the caller skips or, under CI,
// fails.
type errNoBroker struct{ howTo string }

func (e errNoBroker) Error() string { return e.howTo }

// InCI reports whether the CI environment variable asks for strictness: any
// value but "", 0, false and no does. Under CI a test fails where it would
// otherwise skip for want of a broker, a database or a tool, so that CI can
// never pass by skipping.
func InCI() bool { return inCI(os.Getenv) }

// inCI is InCI reading the environment through getenv.
func inCI(getenv func(string) string) bool {
	switch strings.ToLower(strings.TrimSpace(getenv("CI"))) {
	case "", "0", "false", "no":
		return false
	}
	return true
}

// resolve turns a selection error into the right test outcome.
func resolve(t testing.TB, getenv func(string) string, err error) {
	t.Helper()
	if nb, ok := err.(errNoBroker); ok {
		if inCI(getenv) {
			t.Fatalf("brokertest: no broker and CI is set, so this is a failure, not a skip: %s", nb.howTo)
		}
		t.Skipf("brokertest: skipped, no broker: %s", nb.howTo)
	}
	t.Fatalf("brokertest: %v", err)
}

// dockerHealthy reports whether a Docker engine answers. Without an engine
// it returns in well under a millisecond.
func dockerHealthy(ctx context.Context) (err error) {
	defer func() {
		// Some provider lookups panic when no engine is configured at all.
		if r := recover(); r != nil {
			err = fmt.Errorf("docker provider: %v", r)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, dockerProbeTimeout)
	defer cancel()
	provider, err := testcontainers.ProviderDefault.GetProvider()
	if err != nil {
		return fmt.Errorf("docker provider: %w", err)
	}
	defer provider.Close()
	if err := provider.Health(ctx); err != nil {
		return fmt.Errorf("docker health: %w", err)
	}
	return nil
}

// dockerOnce caches the Docker answer for the whole test binary.
var dockerOnce = sync.OnceValue(func() error { return dockerHealthy(context.Background()) })

// Name returns a name unique to this test and run, for an exchange, queue,
// topic or consumer group: the prefix, the test name and a random suffix,
// using only characters that both RabbitMQ and Kafka accept.
func Name(t testing.TB, prefix string) string {
	t.Helper()
	var b strings.Builder
	for _, r := range strings.ToLower(t.Name()) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	base := strings.Trim(b.String(), "-")
	if len(base) > 60 {
		base = base[len(base)-60:]
	}
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		t.Fatalf("brokertest: random suffix: %v", err)
	}
	return prefix + "." + base + "." + hex.EncodeToString(suffix)
}

// Eventually polls check until it returns nil or the timeout passes; then it
// fails the test with check's last error. Tests wait with it instead of
// sleeping.
func Eventually(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	interval := 5 * time.Millisecond
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still not true after %v: %v", timeout, err)
		}
		<-time.After(interval)
		if interval < 200*time.Millisecond {
			interval *= 2
		}
	}
}

// Receive waits up to timeout for a value from ch and returns it. If none
// comes, it fails the test with failure, which says what did not happen
// ("the handler was not called").
func Receive[T any](t testing.TB, ch <-chan T, timeout time.Duration, failure string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("%s within %v", failure, timeout)
		var zero T
		return zero
	}
}

// shared holds what the tests of one package share: started containers and
// the embedded Kafka, and how to stop them.
var shared struct {
	mu       sync.Mutex
	rabbit   *RabbitMQ
	kafka    *KafkaCluster
	stoppers []func()
}

// Main runs the tests of a package and then stops the containers and
// embedded brokers they started. Call it from TestMain:
//
//	func TestMain(m *testing.M) { brokertest.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	shared.mu.Lock()
	for i := len(shared.stoppers) - 1; i >= 0; i-- {
		shared.stoppers[i]()
	}
	shared.stoppers = nil
	shared.mu.Unlock()
	os.Exit(code)
}

// ClosedPort returns host:port of a local TCP port where nothing listens, for
// tests of what a program says when its broker is not there.
func ClosedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("brokertest: finding a free port: %v", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatalf("brokertest: closing the probe listener: %v", err)
	}
	return addr
}

// SilentPort returns the address of a port that accepts connections and
// never says a word, as a paused broker (or a program that is not the
// broker) does, until the test ends.
func SilentPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("brokertest: opening a silent port: %v", err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // accept, then say nothing
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// DiffIDs compares the message IDs a test got with the ones it wanted, as
// multisets: missing were wanted more often than got, extra were got but
// not wanted, or got more often than wanted (a duplicate delivery). Both
// come back sorted.
func DiffIDs(want, got []string) (missing, extra []string) {
	left := map[string]int{}
	for _, id := range want {
		left[id]++
	}
	for _, id := range got {
		if left[id] > 0 {
			left[id]--
			continue
		}
		extra = append(extra, id)
	}
	for id, n := range left {
		for range n {
			missing = append(missing, id)
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	return missing, extra
}

// CheckIDs marks the test failed, naming the missing and the extra IDs,
// unless got holds exactly the IDs of want (see DiffIDs). It reports
// whether they matched, so a caller can stop with t.FailNow.
func CheckIDs(t testing.TB, what string, got, want []string) bool {
	t.Helper()
	if err := MatchIDs(got, want); err != nil {
		t.Errorf("%s: %v", what, err)
		return false
	}
	return true
}

// MatchIDs is CheckIDs as an error, for a check that [Eventually] polls: nil
// when got holds exactly the IDs of want (see DiffIDs), else an error
// naming the missing and the extra IDs.
func MatchIDs(got, want []string) error {
	missing, extra := DiffIDs(want, got)
	if len(missing) == 0 && len(extra) == 0 {
		return nil
	}
	return fmt.Errorf("got %d IDs, want %d; missing %s; extra or repeated %s", len(got), len(want), shortList(missing), shortList(extra))
}

// shortList keeps a long list of IDs readable in a failure message.
func shortList(ids []string) string {
	if len(ids) > 20 {
		return fmt.Sprintf("%v ... (%d in all)", ids[:20], len(ids))
	}
	return fmt.Sprint(ids)
}
