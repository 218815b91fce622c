package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"example.com/myevents/labs/brokertest"
)

// build builds the two service commands into a directory of the test, as
// the Dockerfile does (static, CGO_ENABLED=0). With a cold build cache it
// takes a minute: call it before starting a timer.
func build(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is not on PATH: %v", err)
	}
	dir := t.TempDir()
	cmd := exec.Command(goTool, "build", "-o", dir+string(os.PathSeparator),
		"example.com/myevents/capstone/cmd/eventservice", "example.com/myevents/capstone/cmd/bookingservice")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// command returns a command running the named service binary in a
// directory of its own, without the configuration variables of the
// environment the tests run in.
func command(t *testing.T, ctx context.Context, bin, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...)
	cmd.Dir = t.TempDir()
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "LISTEN_ADDR", "BROKER", "AMQP_URL", "KAFKA_BROKERS", "DATABASE_URL":
		default:
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd
}

// TestCommands runs the built commands as a user or a container does.
func TestCommands(t *testing.T) {
	bin := build(t)
	t.Run("RefuseBadConfiguration", func(t *testing.T) { refuseBadConfiguration(t, bin) })
	t.Run("StopOnSIGTERM", func(t *testing.T) { stopOnSIGTERM(t, bin) })
}

// refuseBadConfiguration: a configuration a service cannot use ends it
// with exit status 1 and one sentence on stderr that names the problem,
// never a panic.
func refuseBadConfiguration(t *testing.T, bin string) {
	rabbit := brokertest.AMQP(t)
	wrongPassword, err := url.Parse(rabbit.URL)
	if err != nil {
		t.Fatal(err)
	}
	wrongPassword.User = url.UserPassword(wrongPassword.User.Username(), "not-the-password")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() }) // after the parallel subtests

	for _, tc := range []struct {
		name    string
		command string
		args    []string
		want    string
	}{
		{"unknown broker", "eventservice", []string{"-broker", "nats"}, `unknown broker "nats"`},
		{"bad DSN", "bookingservice", []string{"-db", "mysql://root@db/x"}, `unknown database "mysql://root@db/x"`},
		{"memory with RabbitMQ", "bookingservice", []string{"-db", "memory:"}, "cannot keep its state in memory with RabbitMQ"},
		{"RabbitMQ down", "eventservice", []string{"-url", "amqp://guest:guest@127.0.0.1:1/"}, "connecting to RabbitMQ at amqp://guest:xxxxx@127.0.0.1:1/ (is it running?"},
		{"wrong password", "bookingservice", []string{"-url", wrongPassword.String()}, "the broker refused the user name or password"},
		{"Kafka down", "bookingservice", []string{"-broker", "kafka", "-brokers", "127.0.0.1:1", "-db", "memory:"}, "connecting to Kafka at 127.0.0.1:1: no broker answered"},
		{"PostgreSQL down", "eventservice", []string{"-db", "postgres://nobody:secret@127.0.0.1:1/x"}, "connecting to PostgreSQL at postgres://nobody:xxxxx@127.0.0.1:1/x"},
		{"port taken", "eventservice", []string{"-listen", busy.Addr().String()}, "listening for HTTP on " + busy.Addr().String()},
		{"stray argument", "eventservice", []string{"serve"}, `unexpected argument "serve"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			var stdout, stderr bytes.Buffer
			args := tc.args
			if !slices.Contains(args, "-listen") {
				// Another program may use the default port.
				args = append([]string{"-listen", "127.0.0.1:0"}, args...)
			}
			cmd := command(t, ctx, bin, tc.command, args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("%s %v: %v, want exit status 1\nstderr:\n%s", tc.command, tc.args, err, stderr.String())
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "error: ") || !strings.Contains(last, tc.want) {
				t.Errorf("last line of stderr = %q, want \"error: ...%s...\"", last, tc.want)
			}
			for _, bad := range []string{"panic", "goroutine ", "secret", "not-the-password"} {
				if strings.Contains(stderr.String(), bad) {
					t.Errorf("stderr contains %q:\n%s", bad, stderr.String())
				}
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
		})
	}
}

// stopOnSIGTERM: both commands serve until SIGTERM and then stop cleanly
// with exit status 0.
func stopOnSIGTERM(t *testing.T, bin string) {
	t.Run("bookingservice-kafka", func(t *testing.T) {
		t.Parallel()
		cfg := kafkaConfig(t)
		runUntilSIGTERM(t, bin, "bookingservice", "-listen", "127.0.0.1:0", "-broker", "kafka",
			"-brokers", strings.Join(cfg.KafkaBrokers, ","), "-topic", cfg.Topic, "-group", cfg.Group)
	})
	t.Run("eventservice-amqp", func(t *testing.T) {
		t.Parallel()
		cfg := amqpConfig(t)
		runUntilSIGTERM(t, bin, "eventservice", "-listen", "127.0.0.1:0", "-url", cfg.AMQPURL, "-exchange", cfg.Exchange)
	})
}

var urlInLog = regexp.MustCompile(`msg="serving HTTP" .*url=(http://\S+)`)

// process is a service binary a test started, with its log.
type process struct {
	cmd      *exec.Cmd
	url      string        // the base URL it serves on
	readDone chan struct{} // closed when its stderr is closed
	mu       sync.Mutex
	logs     strings.Builder
}

// output returns what the process logged so far.
func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// startProcess runs the named service binary and returns once it logged
// the URL it serves on (its first "serving HTTP" line).
func startProcess(t *testing.T, ctx context.Context, bin, name string, args ...string) *process {
	t.Helper()
	p := &process{cmd: command(t, ctx, bin, name, args...), readDone: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := make(chan string, 1)
	go func() {
		defer close(p.readDone)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := urlInLog.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case p.url = <-found:
	case <-p.readDone:
		_ = p.cmd.Wait()
		t.Fatalf("%s ended before serving:\n%s", name, p.output())
	case <-ctx.Done():
		t.Fatalf("%s did not start serving:\n%s", name, p.output())
	}
	return p
}

// runUntilSIGTERM starts a command, waits until /healthz answers 200,
// sends SIGTERM and requires a clean exit.
func runUntilSIGTERM(t *testing.T, bin, name string, args ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()
	p := startProcess(t, ctx, bin, name, args...)
	cmd, base, readDone, output := p.cmd, p.url, p.readDone, p.output
	brokertest.Eventually(t, wait, func() error {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("healthz = %d", resp.StatusCode)
		}
		return nil
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-readDone
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%s after SIGTERM: %v, want exit status 0\n%s", name, err, output())
	}
	logged := output()
	for _, want := range []string{`msg="shutting down"`, `msg="HTTP server stopped"`, "msg=stopped"} {
		if !strings.Contains(logged, want) {
			t.Errorf("the log has no %s:\n%s", want, logged)
		}
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Errorf("%s still answers after it exited", base)
	}
}
