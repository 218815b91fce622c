package brokertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/testcontainers/testcontainers-go"
	tcexec "github.com/testcontainers/testcontainers-go/exec"
	tcrabbitmq "github.com/testcontainers/testcontainers-go/modules/rabbitmq"

	"example.com/myevents/capstone/endpoint"
)

// DefaultAMQPURL is the local development broker the labs fall back to.
const DefaultAMQPURL = "amqp://guest:guest@127.0.0.1:5672/"

// ErrNoCtl is returned by Ctl when rabbitmqctl cannot reach the broker (a
// broker from AMQP_URL on another machine); a test may skip the checks that
// need it, and only those.
var ErrNoCtl = errors.New("rabbitmqctl is not reachable")

// RabbitMQ is a broker handed to a test.
type RabbitMQ struct {
	URL     string  // AMQP URL with credentials
	Backend Backend // where it came from
	reason  string

	ctl  func(ctx context.Context, args ...string) (string, error)
	logs func(ctx context.Context) (string, error)
}

// Ctl runs rabbitmqctl against the broker (on this machine, or inside the
// container) and returns its output, so a test can make the broker do what a
// real outage does, e.g. Ctl(ctx, "close_connection", pid, "test"). The broker
// is shared by every test running at the same time: close only connections
// the test opened (find them by their connection_name client property in
// Ctl(ctx, "list_connections", "pid", "client_properties")), and never stop,
// reset or close everything.
func (r *RabbitMQ) Ctl(ctx context.Context, args ...string) (string, error) {
	if r.ctl == nil {
		return "", fmt.Errorf("%w for the %s broker %s", ErrNoCtl, r.Backend, Redact(r.URL))
	}
	return r.ctl(ctx, args...)
}

// AdminChannel opens a connection and a channel of the test's own to the
// broker at url, for checking what the broker holds independently of the
// code under test; both close when the test ends.
func AdminChannel(t testing.TB, url string) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("brokertest: connecting the test's own client to %s: %v", Redact(url), err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("brokertest: opening the test's channel: %v", err)
	}
	return ch
}

// PublishConfirmed puts ch in confirm mode, publishes msg to exchange with
// key, mandatory, and waits for the broker's confirm: a test's own
// publish, independent of the code under test. A nack is an error.
func PublishConfirmed(ch *amqp.Channel, exchange, key string, msg amqp.Publishing) error {
	if err := ch.Confirm(false /* no-wait */); err != nil {
		return fmt.Errorf("enabling publisher confirms: %w", err)
	}
	dc, err := ch.PublishWithDeferredConfirm(exchange, key,
		true,  // mandatory
		false, // immediate
		msg)
	if err != nil {
		return fmt.Errorf("publishing to %q with key %q: %w", exchange, key, err)
	}
	if !dc.Wait() {
		return fmt.Errorf("the broker nacked message %d", dc.DeliveryTag)
	}
	return nil
}

// AMQP returns the RabbitMQ broker for this test, chosen in the order the
// package documentation gives, and logs which one it is.
func AMQP(t testing.TB) *RabbitMQ {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.rabbit == nil {
		p := realProbes()
		c, err := chooseRabbitMQ(context.Background(), p)
		if err != nil {
			resolve(t, p.getenv, err)
		}
		r, err := provideRabbitMQ(c)
		if err != nil {
			t.Fatalf("brokertest: %v", err)
		}
		shared.rabbit = r
	}
	r := shared.rabbit
	t.Logf("brokertest: RabbitMQ at %s, backend %s (%s)", Redact(r.URL), r.Backend, r.reason)
	if r.logs != nil {
		t.Cleanup(func() {
			if !t.Failed() {
				return
			}
			out, err := r.logs(context.Background())
			if err != nil {
				t.Logf("brokertest: reading RabbitMQ container logs: %v", err)
				return
			}
			t.Logf("brokertest: RabbitMQ container logs:\n%s", out)
		})
	}
	return r
}

// chooseRabbitMQ applies the selection order, or the backend that
// BROKERTEST_RABBITMQ forces.
func chooseRabbitMQ(ctx context.Context, p probes) (choice, error) {
	force, err := forcedBackend(p.getenv, EnvRabbitMQ, FromEnvironment, FromContainer, FromLocal)
	if err != nil {
		return choice{}, err
	}
	u := p.getenv("AMQP_URL")
	switch {
	case force == FromEnvironment && u == "":
		return choice{}, fmt.Errorf("%s=environment, but AMQP_URL is not set; set it to your broker's URL, or unset %s", EnvRabbitMQ, EnvRabbitMQ)
	case force != "" && force != FromEnvironment && u != "":
		return choice{}, fmt.Errorf("%s=%s contradicts AMQP_URL=%s, which asks for that broker; unset one of them", EnvRabbitMQ, force, Redact(u))
	case u != "":
		if err := p.amqp(ctx, u); err != nil {
			return choice{}, fmt.Errorf("AMQP_URL=%s is set but that broker does not answer: %v; start it, fix AMQP_URL, or unset AMQP_URL to use Docker or the local broker", Redact(u), err)
		}
		return choice{backend: FromEnvironment, target: u, reason: "AMQP_URL is set"}, nil
	}

	var dockerErr error
	if force == "" || force == FromContainer {
		img, from := chooseImage(p.getenv, EnvRabbitMQImage, RabbitMQImage)
		reuse, err := reuseName(p.getenv)
		if err != nil {
			return choice{}, err
		}
		dockerErr = p.docker(ctx)
		switch {
		case dockerErr == nil && force == FromContainer:
			return choice{backend: FromContainer, image: img, reuse: reuse, reason: EnvRabbitMQ + "=container and Docker answers; " + from}, nil
		case dockerErr == nil:
			return choice{backend: FromContainer, image: img, reuse: reuse, reason: "Docker answers; " + from}, nil
		case force == FromContainer:
			return choice{}, noEngine(EnvRabbitMQ, dockerErr)
		}
	}

	localErr := p.amqp(ctx, DefaultAMQPURL)
	switch {
	case localErr == nil && force == FromLocal:
		return choice{backend: FromLocal, target: DefaultAMQPURL, reason: EnvRabbitMQ + "=local and the local broker answers"}, nil
	case localErr == nil:
		return choice{backend: FromLocal, target: DefaultAMQPURL, reason: "no AMQP_URL and no Docker engine; the local broker answers"}, nil
	case force == FromLocal:
		return choice{}, fmt.Errorf("%s=local, but nothing answers at %s (%v); start it (`scripts/rabbitmq-up.sh`), or unset %s", EnvRabbitMQ, Redact(DefaultAMQPURL), localErr, EnvRabbitMQ)
	}
	return choice{}, errNoBroker{howTo: fmt.Sprintf(
		"AMQP_URL is not set, no Docker engine answers (%v) and nothing answers at %s (%v). "+
			"Get a broker with one of: `docker compose -f docker/compose.yaml up -d --wait rabbitmq`; "+
			"a local RabbitMQ (`rabbitmq-server -detached`); or AMQP_URL=amqp://user:pass@host:5672/",
		firstLine(dockerErr), Redact(DefaultAMQPURL), localErr)}
}

// provideRabbitMQ turns a choice into a running broker.
func provideRabbitMQ(c choice) (*RabbitMQ, error) {
	r := &RabbitMQ{URL: c.target, Backend: c.backend, reason: c.reason}
	switch c.backend {
	case FromEnvironment, FromLocal:
		if isLoopback(c.target) {
			if path, err := exec.LookPath("rabbitmqctl"); err == nil {
				r.ctl = func(ctx context.Context, args ...string) (string, error) {
					out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
					if err != nil {
						return string(out), fmt.Errorf("rabbitmqctl %s: %w: %s", strings.Join(args, " "), err, out)
					}
					return string(out), nil
				}
			}
		}
		return r, nil
	case FromContainer:
		if c.reuse != "" {
			if err := reusable(c.reuse, testcontainers.ReadConfig().Config.RyukDisabled); err != nil {
				return nil, err
			}
			// Shared with other packages' tests, now or later: it stays.
			r.reason += "; the container " + c.reuse + ", shared by every package (" + EnvRabbitMQReuse + ")"
			return startRabbitMQContainer(r, c.image, func(func()) {}, testcontainers.WithReuseByName(c.reuse))
		}
		return startRabbitMQContainer(r, c.image, func(stop func()) { shared.stoppers = append(shared.stoppers, stop) })
	}
	return nil, fmt.Errorf("unknown RabbitMQ backend %q", c.backend)
}

// startRabbitMQContainer starts a RabbitMQ image and hands the function
// that removes it to onStop: for the container the tests of a package
// share, Main calls it at the end; for PrivateAMQP's, the test's cleanup.
func startRabbitMQContainer(r *RabbitMQ, image string, onStop func(stop func()), opts ...testcontainers.ContainerCustomizer) (*RabbitMQ, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ctr, err := tcrabbitmq.Run(ctx, image, opts...)
	if ctr != nil {
		onStop(func() { terminate(ctr) })
	}
	if err != nil {
		return nil, fmt.Errorf("starting RabbitMQ container %s: %w (%s names another image)", image, err, EnvRabbitMQImage)
	}
	if len(opts) > 0 { // reused: found by name, it may run another image
		info, err := ctr.Inspect(ctx)
		if err != nil {
			return nil, fmt.Errorf("inspecting RabbitMQ container: %w", err)
		}
		if info.Config != nil && !sameImage(info.Config.Image, image) {
			return nil, fmt.Errorf("the RabbitMQ container %s runs %s, not %s; remove it (docker rm -f, or podman rm -f) or set %s to another name",
				strings.TrimPrefix(info.Name, "/"), info.Config.Image, image, EnvRabbitMQReuse)
		}
	}
	u, err := ctr.AmqpURL(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading RabbitMQ container URL: %w", err)
	}
	r.URL = u
	id := ctr.GetContainerID()
	r.ctl = func(ctx context.Context, args ...string) (string, error) {
		code, text, err := execInContainer(ctx, id, append([]string{"rabbitmqctl"}, args...))
		if err != nil {
			return "", fmt.Errorf("rabbitmqctl %s in container: %w", strings.Join(args, " "), err)
		}
		if code != 0 {
			return text, fmt.Errorf("rabbitmqctl %s in container exited %d: %s", strings.Join(args, " "), code, text)
		}
		return text, nil
	}
	r.logs = func(ctx context.Context) (string, error) { return containerLogs(ctx, ctr) }
	return r, nil
}

// reuseName reads BROKERTEST_RABBITMQ_REUSE: "" or a container name.
func reuseName(getenv func(string) string) (string, error) {
	name := strings.TrimSpace(getenv(EnvRabbitMQReuse))
	if name == "" {
		return "", nil
	}
	if !validContainerName(name) {
		return "", fmt.Errorf("%s=%q is not a container name: letters, digits, '_', '.' and '-', starting with a letter or digit", EnvRabbitMQReuse, name)
	}
	return name, nil
}

// reusable refuses a shared container while Ryuk runs: Ryuk removes it
// when the go test run that started it ends, even while a later run
// uses it (testcontainers-go issue 2445).
func reusable(name string, ryukDisabled bool) error {
	if ryukDisabled {
		return nil
	}
	return fmt.Errorf("%s=%s shares one RabbitMQ container between test runs, but Ryuk is on and would remove it under a later run: set TESTCONTAINERS_RYUK_DISABLED=true too (then remove the container yourself: docker rm -f %s), or unset %s",
		EnvRabbitMQReuse, name, name, EnvRabbitMQReuse)
}

// validContainerName reports whether name is one Docker and Podman accept:
// [a-zA-Z0-9][a-zA-Z0-9_.-]*.
func validContainerName(name string) bool {
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			i > 0 && (c == '_' || c == '.' || c == '-')
		if !ok {
			return false
		}
	}
	return name != ""
}

// sameImage compares image references, allowing what an engine may add
// to a short name: "docker.io/library/" (Docker), "localhost/" (Podman,
// for an image built here) and the tag ":latest".
func sameImage(a, b string) bool {
	norm := func(s string) string {
		s = strings.TrimPrefix(s, "docker.io/")
		s = strings.TrimPrefix(s, "library/")
		s = strings.TrimPrefix(s, "localhost/")
		name := s[strings.LastIndex(s, "/")+1:]
		if !strings.ContainsAny(name, ":@") {
			s += ":latest"
		}
		return s
	}
	return norm(a) == norm(b)
}

// execInContainer runs cmd in a running container and returns its exit code
// and output. It talks to the engine through a client of its own and closes
// it, so no HTTP connection (and none of the goroutines that serve one)
// outlives the call: a test that checks for leaked goroutines may run
// rabbitmqctl.
func execInContainer(ctx context.Context, id string, cmd []string) (int, string, error) {
	provider, err := testcontainers.NewDockerProvider()
	if err != nil {
		return 0, "", fmt.Errorf("docker provider: %w", err)
	}
	defer provider.Close()
	ctr := &testcontainers.DockerContainer{ID: id}
	ctr.SetProvider(provider)
	code, out, err := ctr.Exec(ctx, cmd, tcexec.Multiplexed())
	if err != nil {
		return 0, "", err
	}
	text, err := io.ReadAll(out)
	return code, string(text), err
}

// dialAMQP checks that an AMQP URL answers and accepts its credentials.
func dialAMQP(_ context.Context, rawURL string) error {
	conn, err := amqp.DialConfig(rawURL, amqp.Config{Dial: amqp.DefaultDial(3 * time.Second)})
	if err != nil {
		var amqpErr *amqp.Error
		if errors.As(err, &amqpErr) && amqpErr.Code == amqp.AccessRefused {
			return fmt.Errorf("credentials refused: %w", err)
		}
		return err
	}
	return conn.Close()
}

// Redact hides the password in a broker URL, for logs and messages, by the
// module's one rule (endpoint.Redact).
func Redact(rawURL string) string { return endpoint.Redact(rawURL) }

// isLoopback reports whether the URL points at this machine.
func isLoopback(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// firstLine keeps error messages on one line.
func firstLine(err error) string {
	if err == nil {
		return ""
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// terminate removes a test's container at once: nothing in it is worth a
// graceful stop, which would cost up to ten seconds per package.
func terminate(ctr testcontainers.Container) {
	_ = testcontainers.TerminateContainer(ctr, testcontainers.StopTimeout(0))
}

// containerLogs reads everything a container printed.
func containerLogs(ctx context.Context, ctr testcontainers.Container) (string, error) {
	rc, err := ctr.Logs(ctx)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}
