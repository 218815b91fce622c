package brokertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// FromPrivateNode is the backend of PrivateAMQP: a RabbitMQ node of one
// test's own, on this machine.
const FromPrivateNode Backend = "private node"

// privateStartTimeout bounds how long PrivateAMQP waits for its node. The
// port opens some seconds after `rabbitmq-server -detached` returns (about
// 6 s on an idle machine, 20 s on a busy one).
const privateStartTimeout = 2 * time.Minute

// privateStartAttempts is how many nodes PrivateAMQP starts, on new ports
// each time, when a port it picked was taken before the node listened on
// it.
const privateStartAttempts = 3

// portsPicked, when set (by a test of this package), is called with each
// private node once its ports are picked, before it starts.
var portsPicked func(*privateNode)

// bootError is a node that will never answer: its log says BOOT FAILED,
// or it died before it wrote one.
type bootError struct {
	portTaken bool   // a port it was to listen on is (or may be) taken: other ports may do
	reason    string // what shows it
}

func (e *bootError) Error() string { return "its boot failed: " + e.reason }

// privateVanishedAfter is how long after `rabbitmq-server -detached` a
// node may still have written no pid file while epmd knows no such node.
// A node that boots registers with epmd and writes its pid file in its
// first seconds; the Erlang VM dies before either when its distribution
// port is taken.
const privateVanishedAfter = 20 * time.Second

// PrivateAMQP starts a RabbitMQ node for this test alone, for a test that
// stops, restarts or cuts off its broker (rabbitmqctl stop_app, start_app),
// which it must never do to the broker other tests share. The node is a
// second one of the RabbitMQ installed here (the Debian rabbitmq-server
// package, or any rabbitmq-server on PATH), with its own node name, AMQP
// and distribution ports, data and log directories in a temporary
// directory, and no plugins (so no management or Prometheus port can
// collide with the shared node's). It returns once the node accepts AMQP
// connections; Ctl runs `rabbitmqctl -n NODE ...` against it. The node is
// stopped and its directory deleted when the test ends.
//
// When the package's shared broker comes from a container (a Docker or
// Podman engine answers, or BROKERTEST_RABBITMQ=container), PrivateAMQP
// starts a container of the test's own instead, from the same image, and
// removes it when the test ends.
//
// Starting a node takes 6 to 20 seconds. Without a rabbitmq-server the
// test is skipped with a message saying how to get one, or fails when the
// CI environment variable is set.
func PrivateAMQP(t testing.TB) *RabbitMQ {
	t.Helper()
	// Where the shared broker comes from a container, so does this one: a
	// container of the test's own, which rabbitmqctl in the container can
	// stop and start like a node.
	if c, err := chooseRabbitMQ(context.Background(), realProbes()); err == nil && c.backend == FromContainer {
		return privateContainer(t, c)
	}
	server, ctl, err := rabbitmqScripts()
	if err != nil {
		resolve(t, os.Getenv, errNoBroker{howTo: err.Error()})
	}
	start := time.Now()
	n, err := startPrivateNode(t, server, ctl)
	if err != nil {
		t.Fatalf("brokertest: %v", err)
	}
	t.Logf("brokertest: RabbitMQ at %s, backend %s (node %s, ready after %v)", Redact(n.url), FromPrivateNode, n.name, time.Since(start).Round(100*time.Millisecond))
	return &RabbitMQ{
		URL:     n.url,
		Backend: FromPrivateNode,
		reason:  "a node of the test's own, node " + n.name,
		ctl:     n.ctl,
		logs:    func(context.Context) (string, error) { return n.logTail(), nil },
	}
}

// startPrivateNode prepares and starts a node, to be stopped when t ends.
// When a port it picked free was taken before the node listened on it
// (another package's test, in a suite that runs them side by side), the
// node's boot fails: it starts another on other ports, up to
// privateStartAttempts nodes in all.
func startPrivateNode(t testing.TB, server, ctl string) (*privateNode, error) {
	for attempt := 1; ; attempt++ {
		n, err := newPrivateNode(server, ctl)
		if err != nil {
			return nil, fmt.Errorf("preparing a private RabbitMQ node: %w", err)
		}
		if portsPicked != nil {
			portsPicked(n)
		}
		err = n.start()
		var boot *bootError
		if err == nil || !errors.As(err, &boot) || !boot.portTaken || attempt == privateStartAttempts {
			t.Cleanup(func() { n.stop(t) })
			if err != nil {
				return nil, fmt.Errorf("starting the private RabbitMQ node %s: %w\n%s", n.name, err, n.logTail())
			}
			return n, nil
		}
		t.Logf("brokertest: the private RabbitMQ node %s could not listen (%v); starting another on other ports", n.name, err)
		n.stop(t)
	}
}

// privateContainer starts the container PrivateAMQP hands to one test.
func privateContainer(t testing.TB, c choice) *RabbitMQ {
	t.Helper()
	start := time.Now()
	r, err := startRabbitMQContainer(&RabbitMQ{Backend: FromContainer, reason: "a container of the test's own; " + c.reason}, c.image, func(stop func()) { t.Cleanup(stop) })
	if err != nil {
		t.Fatalf("brokertest: starting a private RabbitMQ container: %v", err)
	}
	t.Logf("brokertest: RabbitMQ at %s, backend %s (%s, ready after %v)", Redact(r.URL), r.Backend, r.reason, time.Since(start).Round(100*time.Millisecond))
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if out, err := r.logs(context.Background()); err == nil {
			t.Logf("brokertest: the private RabbitMQ container's logs:\n%s", out)
		}
	})
	return r
}

// rabbitmqScripts finds rabbitmq-server and rabbitmqctl. The Debian
// package's /usr/sbin wrappers switch to the rabbitmq user and drop the
// environment the node needs; its scripts in /usr/lib/rabbitmq/bin do not.
func rabbitmqScripts() (server, ctl string, err error) {
	const debian = "/usr/lib/rabbitmq/bin"
	if _, err := os.Stat(filepath.Join(debian, "rabbitmq-server")); err == nil {
		return filepath.Join(debian, "rabbitmq-server"), filepath.Join(debian, "rabbitmqctl"), nil
	}
	server, err = exec.LookPath("rabbitmq-server")
	if err == nil {
		ctl, err = exec.LookPath("rabbitmqctl")
	}
	if err != nil {
		return "", "", fmt.Errorf("this test starts a RabbitMQ node of its own and needs rabbitmq-server and rabbitmqctl on this machine (%v): install RabbitMQ (Debian/Ubuntu: apt-get install rabbitmq-server) and run the test again", err)
	}
	return server, ctl, nil
}

// privateNode is one test's RabbitMQ node.
type privateNode struct {
	server, ctlPath string
	name            string // node name, such as brokertest-1a2b3c4d@localhost
	dir             string // everything the node writes
	url             string
	env             []string
}

// newPrivateNode picks the names and ports and writes the node's own
// configuration, environment and plugin files.
func newPrivateNode(server, ctl string) (_ *privateNode, err error) {
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "brokertest-rabbitmq-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	amqpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	distPort, err := freePort()
	if err != nil {
		return nil, err
	}
	n := &privateNode{
		server: server, ctlPath: ctl, dir: dir,
		name: "brokertest-" + hex.EncodeToString(suffix) + "@localhost",
		url:  fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", amqpPort),
	}
	files := map[string]string{
		// Its own listener: the machine's rabbitmq.conf may name 5672.
		"rabbitmq.conf": fmt.Sprintf("listeners.tcp.local = 127.0.0.1:%d\n", amqpPort),
		// No plugins: their listeners (15672, 15692) belong to the shared node.
		"enabled_plugins": "[].\n",
		// Not the machine's rabbitmq-env.conf, which names the shared node.
		"rabbitmq-env.conf": "# brokertest: a private node; settings come from the environment\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "RABBITMQ_") && k != "HOME" && k != "ERL_FLAGS" {
			n.env = append(n.env, kv)
		}
	}
	n.env = append(n.env,
		"HOME="+dir, // the Erlang cookie that the node and rabbitmqctl share
		"RABBITMQ_NODENAME="+n.name,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(amqpPort),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(distPort),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_PID_FILE="+filepath.Join(dir, "pid"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(dir, "advanced.config"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(dir, "rabbitmq-env.conf"),
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
		"ERL_EPMD_ADDRESS=127.0.0.1",
		// A VM that dies (a taken distribution port) writes its crash
		// dump here, not into the test's package directory.
		"ERL_CRASH_DUMP="+filepath.Join(dir, "erl_crash.dump"),
	)
	return n, nil
}

// freePort returns a TCP port of 127.0.0.1 that nothing listens on now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// ctl runs rabbitmqctl -n NODE args.
func (n *privateNode) ctl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, n.ctlPath, append([]string{"-n", n.name}, args...)...)
	cmd.Env = n.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("rabbitmqctl -n %s %s: %w: %s", n.name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// start starts the node detached and waits until it accepts AMQP
// connections: await_startup fails while the node is not up yet, so it is
// retried.
func (n *privateNode) start() error {
	ctx, cancel := context.WithTimeout(context.Background(), privateStartTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.server, "-detached")
	cmd.Env = n.env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("rabbitmq-server -detached: %w: %s", err, out)
	}
	began := time.Now()
	var last error
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 15*time.Second)
		_, last = n.ctl(attempt, "-q", "await_startup")
		cancelAttempt()
		if last == nil {
			conn, err := amqp.Dial(n.url)
			if err == nil {
				return conn.Close()
			}
			last = err
		}
		if err := n.bootFailed(); err != nil {
			return err // it will not come up: no use waiting
		}
		if last != nil && strings.Contains(last.Error(), "not running at all") && n.pid() == 0 && time.Since(began) > privateVanishedAfter {
			return &bootError{portTaken: true, reason: fmt.Sprintf("no pid file, and epmd knows no such node, %v after it was started: a port it was to listen on may be taken", privateVanishedAfter)}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %w", privateStartTimeout, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// bootFailed returns a *bootError once the node's log says its boot
// failed, and nil before.
func (n *privateNode) bootFailed() error {
	files, _ := filepath.Glob(filepath.Join(n.dir, "log", "*.log"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err == nil && strings.Contains(string(data), "BOOT FAILED") {
			if strings.Contains(string(data), "eaddrinuse") {
				return &bootError{portTaken: true, reason: "a port it was to listen on is taken (eaddrinuse in its log)"}
			}
			return &bootError{reason: "BOOT FAILED in its log"}
		}
	}
	return nil
}

// pid returns the node's OS process ID from its pid file.
func (n *privateNode) pid() int {
	b, err := os.ReadFile(filepath.Join(n.dir, "pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// stop halts the node (rabbitmqctl stop), kills it if it does not go,
// and deletes its directory.
func (n *privateNode) stop(t testing.TB) {
	if t.Failed() {
		t.Logf("brokertest: the private node's log:\n%s", n.logTail())
	}
	pid := n.pid()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := n.ctl(ctx, "stop"); err != nil {
		t.Logf("brokertest: stopping node %s: %v", n.name, err)
	}
	if pid > 0 {
		deadline := time.Now().Add(30 * time.Second)
		// The node is a process of another program: poll until it is gone.
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			<-time.After(100 * time.Millisecond)
		}
		if err := syscall.Kill(pid, 0); err == nil {
			t.Logf("brokertest: node %s (pid %d) did not stop; killing it", n.name, pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		} else if !errors.Is(err, syscall.ESRCH) {
			t.Logf("brokertest: checking node %s (pid %d): %v", n.name, pid, err)
		}
	}
	if err := os.RemoveAll(n.dir); err != nil {
		t.Logf("brokertest: removing %s: %v", n.dir, err)
	}
}

// logTail returns the end of the node's log, for a failing test.
func (n *privateNode) logTail() string {
	files, _ := filepath.Glob(filepath.Join(n.dir, "log", "*.log"))
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if len(data) > 8<<10 {
			data = data[len(data)-8<<10:]
		}
		fmt.Fprintf(&b, "== %s\n%s\n", filepath.Base(f), data)
	}
	return b.String()
}
