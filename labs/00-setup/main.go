// Command 00-setup shows what the labs need and whether this machine has it:
// the workbench's doctor checks Go, RabbitMQ, Kafka and a Docker engine (or
// Podman's, which it finds at Podman's socket and says how to use),
// prints one line per check, and says exactly how to fix whatever is
// missing. With -embedded-kafka it serves an in-memory Kafka instead, for
// the Kafka labs, until Ctrl-C (which ends that mode normally, exit status
// 0).
//
// Usage:
//
//	go run ./labs/00-setup                          # the checks
//	go run ./labs/00-setup -embedded-kafka          # an embedded Kafka on 127.0.0.1:9092 until Ctrl-C
//	go run ./labs/00-setup -embedded-kafka -kafka-port 19092
//
// The checks use -url (else AMQP_URL, else amqp://guest:guest@127.0.0.1:5672/)
// and -brokers (else KAFKA_BROKERS, else 127.0.0.1:9092), the same defaults
// as every lab.
//
// Exit status: 1 when something the labs cannot do without is broken: Go
// older than 1.26, no usable RabbitMQ, or KAFKA_BROKERS set to a Kafka that
// does not answer (the tests would then fail rather than fall back to the
// embedded Kafka). A missing Kafka or Docker alone is not an error: the
// tests fall back to the embedded Kafka and the local RabbitMQ, and the fix
// lines say how to get a Kafka for `go run`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/testcontainers/testcontainers-go"
	"github.com/twmb/franz-go/pkg/kfake"
)

// The labs' defaults.
const (
	defaultURL     = "amqp://guest:guest@127.0.0.1:5672/"
	defaultBrokers = "127.0.0.1:9092"
)

// minGo is the oldest Go release the module builds with (go.mod says 1.26).
const minGo = 26 // Go 1.26

// probeTimeout bounds each network check. RabbitMQ waits about 3 s before it
// hangs up on a wrong password, so it must be longer than that.
const probeTimeout = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	interrupted := ctx.Err() != nil // read it before stop, which cancels ctx as well
	stop()
	switch {
	case err != nil && (interrupted || errors.Is(err, context.Canceled)):
		// Ctrl-C: run has closed what it opened. 130 is what a shell
		// reports for a program ended by Ctrl-C (128 + SIGINT).
		fmt.Fprintln(os.Stderr, "interrupted: stopped cleanly")
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// machine is what the doctor asks about the machine it runs on. Tests
// replace parts of it to make the output independent of the test machine.
type machine struct {
	getenv func(string) string
	docker func(context.Context) error
	// podman looks for Podman's API socket where Podman puts it, and says
	// whether a Docker API answers there; sock is empty when there is none.
	podman func(ctx context.Context) (sock string, answers bool)
}

func run(ctx context.Context, args []string, out io.Writer) error {
	return doctor(ctx, args, out, machine{getenv: os.Getenv, docker: dockerHealthy, podman: findPodman})
}

func doctor(ctx context.Context, args []string, out io.Writer, m machine) error {
	fs := flag.NewFlagSet("00-setup", flag.ContinueOnError)
	amqpURL := fs.String("url", "", "AMQP URL of the broker to check (default $AMQP_URL, else "+defaultURL+")")
	brokers := fs.String("brokers", "", "Kafka bootstrap brokers to check, comma-separated (default $KAFKA_BROKERS, else "+defaultBrokers+")")
	embedded := fs.Bool("embedded-kafka", false, "instead of checking, serve an embedded Kafka until Ctrl-C")
	kafkaPort := fs.Int("kafka-port", 9092, "port of the embedded Kafka on 127.0.0.1 (0: any free port)")
	verbose := fs.Bool("v", false, "log the raw error behind each failed check to stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; see -h", fs.Args())
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	if *embedded {
		return serveKafka(ctx, *kafkaPort, out)
	}

	// Resolve the addresses the way every lab does. Applying the
	// environment here, not as flag defaults, keeps passwords out of -h.
	kafkaFromEnv := false
	if *amqpURL == "" {
		*amqpURL = m.getenv("AMQP_URL")
	}
	if *amqpURL == "" {
		*amqpURL = defaultURL
	}
	if *brokers == "" {
		*brokers = m.getenv("KAFKA_BROKERS")
		kafkaFromEnv = strings.TrimSpace(*brokers) != ""
	}
	if strings.TrimSpace(*brokers) == "" {
		*brokers = defaultBrokers
	}

	fmt.Fprintln(out, "MyEvents doctor: checking what the labs need")
	// Run the checks one after the other, each bounded by probeTimeout.
	// After Ctrl-C, stop instead of printing a verdict nobody reached: a
	// check returns at once when ctx ends, and the ctx.Err() after it says
	// why.
	goResult := checkGo(runtime.Version())
	rabbit := checkRabbitMQ(ctx, *amqpURL, log)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("checking RabbitMQ: %w", err)
	}
	kafka := checkKafka(ctx, *brokers, kafkaFromEnv, log)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("checking Kafka: %w", err)
	}
	docker := checkDocker(ctx, m, log)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("checking Docker: %w", err)
	}
	results := []result{goResult, rabbit, kafka, docker}
	for _, r := range results {
		status := "ok"
		if !r.ok {
			status = "missing"
		}
		fmt.Fprintf(out, "%-9s %-8s %s\n", r.name, status, r.detail)
	}

	// For each failure, say exactly how to fix it.
	var fatal []string
	for _, r := range results {
		if r.ok {
			continue
		}
		fmt.Fprintln(out)
		fmt.Fprintf(out, "to fix %s (%s):\n", r.name, r.why)
		for _, line := range r.fix {
			fmt.Fprintf(out, "  %s\n", line)
		}
		if r.fatal {
			fatal = append(fatal, r.name)
		}
	}

	// The verdict; only a fatal failure makes the exit status 1.
	fmt.Fprintln(out)
	switch {
	case len(fatal) > 0:
		fmt.Fprintf(out, "not ready: fix %s first\n", strings.Join(fatal, " and "))
		return fmt.Errorf("not ready: %s must be fixed before the labs can run (see above)", strings.Join(fatal, " and "))
	case kafka.ok:
		fmt.Fprintln(out, "ready for every lab")
	default:
		fmt.Fprintln(out, "ready for the RabbitMQ labs; start a Kafka (see above) before you go run a Kafka lab")
	}
	return nil
}

// result is the outcome of one check.
type result struct {
	name   string
	ok     bool
	detail string   // the rest of the status line
	why    string   // why the fix matters: required or optional, and for what
	fix    []string // exact commands or steps
	fatal  bool     // the labs cannot run until this is fixed
}

// checkGo compares the toolchain that built this program with the module's
// minimum. (With GOTOOLCHAIN=local, an older go refuses to build the module
// at all and says which version it needs.)
func checkGo(version string) result {
	r := result{name: "go", ok: goVersionOK(version)}
	r.detail = fmt.Sprintf("%s (the module needs go1.%d or newer)", version, minGo)
	if !r.ok {
		r.why = "required: the module does not build with an older Go"
		r.fix = []string{
			fmt.Sprintf("install Go 1.%d or newer from https://go.dev/dl/, or let the go command fetch it (GOTOOLCHAIN=auto, the default)", minGo),
		}
		r.fatal = true
	}
	return r
}

// goVersionOK reports whether a runtime.Version() string is Go 1.minGo or
// newer. Development builds count as new enough.
func goVersionOK(version string) bool {
	if strings.HasPrefix(version, "devel") {
		return true
	}
	rest, found := strings.CutPrefix(version, "go1.")
	if !found {
		return false
	}
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	minor, err := strconv.Atoi(rest[:end])
	return err == nil && minor >= minGo
}

// checkRabbitMQ dials the broker, logs in and opens a channel: what every
// RabbitMQ lab does first.
func checkRabbitMQ(ctx context.Context, rawURL string, log *slog.Logger) result {
	r := result{name: "rabbitmq", why: "required: every RabbitMQ lab and test needs a broker", fatal: true}
	startIt := []string{
		cmd("rabbitmq-server -detached", "RabbitMQ installed here; its port opens a few seconds later"),
		cmd("scripts/rabbitmq-up.sh", "the same, and waits until the broker answers"),
		cmd("docker compose -f docker/compose.yaml up -d --wait rabbitmq", "or RabbitMQ in Docker"),
		cmd("export AMQP_URL=amqp://user:password@host:5672/", "or point the labs at a broker you already have"),
	}

	if _, err := amqp.ParseURI(rawURL); err != nil {
		cause := err
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			cause = urlErr.Err // the *url.Error text quotes the whole URL, password included
		}
		r.detail = fmt.Sprintf("the URL in -url or AMQP_URL is malformed (%v)", cause)
		r.fix = []string{"write it as amqp://user:password@host:5672/vhost, percent-encoding any reserved character (@ : / ? # %) in the password"}
		return r
	}
	where := redact(rawURL)

	// The library's dial takes no context: a server that accepts the
	// connection and never answers would hold the check for probeTimeout,
	// deaf to Ctrl-C. So dial in a goroutine of its own, and stop waiting
	// when ctx ends (closing the connection if it comes after all).
	type dialed struct {
		conn *amqp.Connection
		err  error
	}
	done := make(chan dialed, 1)
	go func() {
		conn, err := amqp.DialConfig(rawURL, amqp.Config{Dial: amqp.DefaultDial(probeTimeout)})
		done <- dialed{conn, err}
	}()
	var conn *amqp.Connection
	var err error
	select {
	case d := <-done:
		conn, err = d.conn, d.err
	case <-ctx.Done():
		go func() {
			if d := <-done; d.conn != nil {
				_ = d.conn.Close()
			}
		}()
		r.detail = "interrupted"
		return r
	}
	if err != nil {
		log.Debug("rabbitmq check failed", "url", where, "err", err)
		var amqpErr *amqp.Error
		var dnsErr *net.DNSError
		var netErr net.Error
		switch {
		case errors.Is(err, amqp.ErrVhost), errors.As(err, &amqpErr) && amqpErr.Code == amqp.NotAllowed:
			r.detail = fmt.Sprintf("RabbitMQ at %s refused the virtual host", where)
			r.fix = []string{
				"check the vhost at the end of the URL (`/` is the default one)",
				"rabbitmqctl add_vhost <vhost> && rabbitmqctl set_permissions -p <vhost> <user> '.*' '.*' '.*'",
			}
		case errors.As(err, &amqpErr) && amqpErr.Code == amqp.AccessRefused:
			r.detail = fmt.Sprintf("RabbitMQ at %s refused the user name or password", where)
			r.fix = []string{
				"put the right user and password in AMQP_URL (or -url): amqp://user:password@host:5672/",
				"by default RabbitMQ accepts guest/guest only from its own machine; anywhere else, create a user:",
				"rabbitmqctl add_user myevents <password> && rabbitmqctl set_permissions -p / myevents '.*' '.*' '.*'",
			}
		case errors.Is(err, syscall.ECONNREFUSED):
			r.detail = fmt.Sprintf("nothing is listening at %s", hostPort(rawURL))
			r.fix = startIt
		case errors.As(err, &dnsErr):
			r.detail = fmt.Sprintf("the host %q does not resolve", dnsErr.Name)
			r.fix = append([]string{"check the host in AMQP_URL (or -url)"}, startIt...)
		case errors.Is(err, amqp.ErrClosed), errors.As(err, &amqpErr) && amqpErr.Code == amqp.FrameError:
			// Garbage instead of connection.start, or a hang-up before it.
			r.detail = fmt.Sprintf("something at %s accepts connections, but it does not speak AMQP", hostPort(rawURL))
			r.fix = []string{"point AMQP_URL (or -url) at RabbitMQ's AMQP port (5672 unless configured otherwise)"}
		case errors.As(err, &netErr) && netErr.Timeout():
			r.detail = fmt.Sprintf("no answer from %s within %v", hostPort(rawURL), probeTimeout)
			r.fix = append([]string{"check the host, the port and any firewall on the way"}, startIt...)
		default:
			r.detail = fmt.Sprintf("connecting to %s failed (%v)", where, err)
			r.fix = startIt
		}
		return r
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		r.detail = fmt.Sprintf("RabbitMQ at %s let us in but refused a channel (%v)", where, err)
		r.fix = []string{"check the broker's log; a broker short of memory or disk refuses work"}
		return r
	}
	_ = ch.Close()
	r.ok, r.fatal = true, false
	r.detail = fmt.Sprintf("%v %v at %s", conn.Properties["product"], conn.Properties["version"], where)
	return r
}

// checkKafka asks the brokers for cluster metadata, as every Kafka client
// does first.
func checkKafka(ctx context.Context, list string, fromEnv bool, log *slog.Logger) result {
	r := result{name: "kafka", why: "optional: `go test` uses an embedded Kafka, but `go run` of a Kafka lab needs one"}
	r.fix = []string{
		cmd("go run ./labs/00-setup -embedded-kafka", "in another terminal: an in-memory Kafka on 127.0.0.1:9092"),
		cmd("docker compose -f docker/compose.yaml up -d --wait kafka", "or Apache Kafka in Docker, also on 127.0.0.1:9092"),
		"the labs use 127.0.0.1:9092 unless KAFKA_BROKERS (or -brokers) says otherwise",
	}
	if fromEnv {
		// brokertest treats a set KAFKA_BROKERS as a promise: the tests use
		// it and fail when it does not answer.
		r.why = "required: KAFKA_BROKERS is set, so the tests use it and fail instead of falling back to the embedded Kafka"
		r.fix = append(r.fix, "or unset KAFKA_BROKERS to let the tests use the embedded Kafka")
		r.fatal = true
	}

	var addrs []string
	for _, b := range strings.Split(list, ",") {
		if b = strings.TrimSpace(b); b != "" {
			addrs = append(addrs, b)
		}
	}
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.ClientID = "myevents-doctor"
	cfg.Net.DialTimeout = probeTimeout
	cfg.Net.ReadTimeout = probeTimeout
	cfg.Net.WriteTimeout = probeTimeout
	cfg.Metadata.Retry.Max = 0
	// sarama.NewClient takes no context either: the same goroutine as for
	// RabbitMQ keeps the check responsive to Ctrl-C.
	type connected struct {
		client sarama.Client
		err    error
	}
	done := make(chan connected, 1)
	go func() {
		client, err := sarama.NewClient(addrs, cfg)
		done <- connected{client, err}
	}()
	var client sarama.Client
	var err error
	select {
	case c := <-done:
		client, err = c.client, c.err
	case <-ctx.Done():
		go func() {
			if c := <-done; c.client != nil {
				_ = c.client.Close()
			}
		}()
		r.detail = "interrupted"
		return r
	}
	if err != nil {
		log.Debug("kafka check failed", "brokers", list, "err", err)
		var netErr net.Error
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			r.detail = fmt.Sprintf("nothing answers at %s (connection refused)", list)
		case errors.As(err, &netErr) && netErr.Timeout():
			r.detail = fmt.Sprintf("no answer from %s within %v", list, probeTimeout)
		default:
			r.detail = fmt.Sprintf("no Kafka answers at %s (%v)", list, err)
		}
		return r
	}
	defer client.Close()

	// The cluster ID tells an embedded Kafka ("kfake") from a real one.
	cluster := "unknown"
	if controller, err := client.Controller(); err == nil {
		if md, err := controller.GetMetadata(sarama.NewMetadataRequest(cfg.Version, nil)); err == nil && md.ClusterID != nil {
			cluster = *md.ClusterID
		}
	}
	topics, _ := client.Topics()
	r.ok, r.fatal = true, false
	r.detail = fmt.Sprintf("%s answers: cluster %q, %d broker(s), %d topic(s)", list, cluster, len(client.Brokers()), len(topics))
	return r
}

// checkDocker asks testcontainers-go, as the tests do, whether a Docker
// engine answers, where DOCKER_HOST says or at Docker's own socket. Podman
// serves the same API at a socket of its own, which the tests do not look
// for: when Podman is there, the fix is to point DOCKER_HOST at it.
func checkDocker(ctx context.Context, m machine, log *slog.Logger) result {
	r := result{name: "docker", why: "optional: without it the tests use the local RabbitMQ and the embedded Kafka"}
	host := m.getenv("DOCKER_HOST")
	err := m.docker(ctx)
	if err == nil {
		r.ok = true
		r.detail = "a Docker engine answers: the tests will use containers"
		if strings.Contains(host, "podman") {
			r.detail = fmt.Sprintf("Podman answers at DOCKER_HOST=%s: the tests will use containers", host)
		}
		return r
	}
	log.Debug("docker check failed", "err", err)
	podmanEnv := func(sock string) []string {
		return []string{
			cmd("export DOCKER_HOST=unix://"+sock, "where the tests look for a Docker API"),
			cmd("export TESTCONTAINERS_RYUK_DISABLED=true", "no reaper container: the tests remove their own"),
			cmd("export TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1", "reach the containers' ports on 127.0.0.1"),
		}
	}
	if host != "" {
		r.detail = fmt.Sprintf("DOCKER_HOST=%s is set, but no engine answers there", host)
		if sock, ok := strings.CutPrefix(host, "unix://"); ok && strings.Contains(sock, "podman") {
			r.fix = []string{
				cmd("podman system service --time=0 "+host+" &", "start Podman's API service there"),
				cmd("systemctl --user start podman.socket", "or let systemd start it (as root: systemctl start podman.socket)"),
			}
			return r
		}
		r.fix = []string{"start the engine DOCKER_HOST names (check with `docker info`), or unset DOCKER_HOST to use Docker's own socket"}
		return r
	}
	if sock, answers := m.podman(ctx); sock != "" {
		if answers {
			r.detail = fmt.Sprintf("no Docker engine answers, but Podman does at %s", sock)
			r.fix = append(podmanEnv(sock), "then the tests start their brokers in Podman containers")
			return r
		}
		r.detail = fmt.Sprintf("no Docker engine answers; Podman's socket %s is there, but nothing answers on it", sock)
		r.fix = append([]string{
			cmd("podman system service --time=0 unix://"+sock+" &", "start Podman's API service"),
		}, podmanEnv(sock)...)
		return r
	}
	r.detail = "no Docker engine answers"
	r.fix = []string{
		"install Docker Engine (or Docker Desktop), start it, and check with `docker info`",
		"or start Podman's API service (`systemctl --user start podman.socket`), then run me again: I show what to set",
		cmd(`eval "$(scripts/podman-up.sh)"`, "or, on Debian as root: Podman set up, no registry needed"),
		"then the tests start their brokers in containers, and docker/compose.yaml works",
	}
	return r
}

// podmanSockets are the places Podman puts its API socket: the user's
// runtime directory (rootless Podman) and /run/podman (rootful).
func podmanSockets(getenv func(string) string, uid int) []string {
	runtimeDir := getenv("XDG_RUNTIME_DIR")
	if runtimeDir == "" && uid != 0 {
		runtimeDir = fmt.Sprintf("/run/user/%d", uid)
	}
	var socks []string
	if runtimeDir != "" {
		socks = append(socks, runtimeDir+"/podman/podman.sock")
	}
	return append(socks, "/run/podman/podman.sock")
}

// findPodman returns the first Podman socket that exists, and whether a
// Docker API answers on it (GET /_ping).
func findPodman(ctx context.Context) (string, bool) {
	for _, sock := range podmanSockets(os.Getenv, os.Getuid()) {
		if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
			continue
		}
		return sock, pingSocket(ctx, sock) == nil
	}
	return "", false
}

// pingSocket asks the Docker API on a Unix socket whether it is up.
func pingSocket(ctx context.Context, sock string) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	transport := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}
	defer transport.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://podman/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /_ping: %s", resp.Status)
	}
	return nil
}

// dockerHealthy reports whether a Docker engine answers. Without one it
// returns in well under a millisecond.
func dockerHealthy(ctx context.Context) (err error) {
	defer func() {
		// Some provider lookups panic when no engine is configured at all.
		if p := recover(); p != nil {
			err = fmt.Errorf("docker provider: %v", p)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
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

// serveKafka runs an embedded Kafka (kfake: the real wire protocol, in
// memory, one broker) on 127.0.0.1 until ctx is cancelled.
func serveKafka(ctx context.Context, port int, out io.Writer) error {
	// No topics are seeded: like docker/compose.yaml, this Kafka does not
	// create topics on first use, and every lab creates the topics it needs.
	cluster, err := kfake.NewCluster(kfake.Ports(port))
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("starting the embedded Kafka: port %d is taken, probably by a Kafka that already runs (check with go run ./labs/00-setup); stop it or pick another port with -kafka-port", port)
		}
		return fmt.Errorf("starting the embedded Kafka on port %d: %w", port, err)
	}
	defer cluster.Close()
	addr := cluster.ListenAddrs()[0]

	fmt.Fprintf(out, "embedded Kafka (kfake) listening on %s\n", addr)
	fmt.Fprintf(out, "point the labs at it: KAFKA_BROKERS=%s (the labs' default is 127.0.0.1:9092)\n", addr)
	fmt.Fprintln(out, "no topics yet: each lab creates the topics it needs")
	fmt.Fprintln(out, "everything stays in memory; press Ctrl-C to stop, and it is gone")

	<-ctx.Done()
	cluster.Close()
	fmt.Fprintln(out, "embedded Kafka stopped")
	return nil
}

// cmd lines up a command and its comment in the fix lines.
func cmd(command, comment string) string {
	return fmt.Sprintf("%-60s # %s", command, comment)
}

// redact hides the password of a URL that has already passed
// amqp.ParseURI.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "<unparseable URL>"
	}
	return u.Redacted()
}

// hostPort returns the host:port an AMQP URL dials.
func hostPort(rawURL string) string {
	uri, err := amqp.ParseURI(rawURL)
	if err != nil {
		return "<unparseable URL>"
	}
	return net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port))
}
