package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labtest"
)

func TestMain(m *testing.M) { brokertest.Main(m) }

// docs are the files whose "Expected output" block the doctor must print.
var docs = []string{"README.md", "../../docs/00-setup.md"}

// noDocker is the machine the docs describe: no Docker engine, and no
// environment variables (the test passes -url and -brokers explicitly).
var noDocker = machine{
	getenv: func(string) string { return "" },
	docker: func(context.Context) error { return errors.New("no Docker engine in this test") },
	podman: func(context.Context) (string, bool) { return "", false },
}

// TestDoctorOnAMachineWithRabbitMQOnly checks the output the docs show: the
// real broker answers, nothing answers where Kafka should be, and there is
// no Docker engine. It must succeed: the RabbitMQ labs can run.
func TestDoctorOnAMachineWithRabbitMQOnly(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	noKafka := brokertest.ClosedPort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var buf bytes.Buffer
	if err := doctor(ctx, []string{"-url", rabbit.URL, "-brokers", noKafka}, &buf, noDocker); err != nil {
		t.Fatalf("doctor: %v (want success: Kafka and Docker are optional)\noutput:\n%s", err, buf.String())
	}

	// The RabbitMQ line reports the broker's own product and version.
	conn, err := amqp.Dial(rabbit.URL)
	if err != nil {
		t.Fatalf("dialing the broker ourselves: %v", err)
	}
	defer conn.Close()
	want := fmt.Sprintf("rabbitmq  ok       %v %v at %s\n", conn.Properties["product"], conn.Properties["version"], brokertest.Redact(rabbit.URL))
	if !strings.Contains(buf.String(), want) {
		t.Errorf("the output lacks %q\noutput:\n%s", want, buf.String())
	}

	labtest.CheckOutput(t, buf.String(), docs,
		brokertest.Redact(rabbit.URL), brokertest.Redact(brokertest.DefaultAMQPURL),
		"nothing answers at "+noKafka, "nothing answers at 127.0.0.1:9092")
}

// TestDoctorSeesKafka points the Kafka check at a Kafka that runs.
func TestDoctorSeesKafka(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	kafka := brokertest.Kafka(t)
	list := strings.Join(kafka.Brokers, ",")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var buf bytes.Buffer
	if err := doctor(ctx, []string{"-url", rabbit.URL, "-brokers", list}, &buf, noDocker); err != nil {
		t.Fatalf("doctor: %v\noutput:\n%s", err, buf.String())
	}
	out := buf.String()
	if !strings.Contains(out, "kafka     ok       "+list+" answers: cluster ") {
		t.Errorf("the Kafka line does not say ok for %s\noutput:\n%s", list, out)
	}
	if strings.Contains(out, "to fix kafka") {
		t.Errorf("the doctor offers a Kafka fix although Kafka answers\noutput:\n%s", out)
	}
	if !strings.HasSuffix(out, "\nready for every lab\n") {
		t.Errorf("the verdict is not \"ready for every lab\"\noutput:\n%s", out)
	}
}

// TestDoctorExplainsRabbitMQFailures checks the fix-it lines for each way
// the RabbitMQ check fails, and that the doctor then exits non-zero.
func TestDoctorExplainsRabbitMQFailures(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	const secret = "s3cret-not-shown"
	wrongPassword, err := url.Parse(rabbit.URL)
	if err != nil {
		t.Fatalf("parsing the broker URL: %v", err)
	}
	wrongPassword.User = url.UserPassword(wrongPassword.User.Username(), secret)
	down := brokertest.ClosedPort(t)

	tests := []struct {
		name   string
		url    string
		status string   // the rabbitmq status line
		fixes  []string // lines that must follow "to fix rabbitmq"
	}{
		{
			name:   "wrong password",
			url:    wrongPassword.String(),
			status: "rabbitmq  missing  RabbitMQ at " + brokertest.Redact(wrongPassword.String()) + " refused the user name or password",
			fixes: []string{
				"  put the right user and password in AMQP_URL (or -url): amqp://user:password@host:5672/",
				"  rabbitmqctl add_user myevents <password> && rabbitmqctl set_permissions -p / myevents '.*' '.*' '.*'",
			},
		},
		{
			name:   "closed port",
			url:    "amqp://guest:" + secret + "@" + down + "/",
			status: "rabbitmq  missing  nothing is listening at " + down,
			fixes: []string{
				"  rabbitmq-server -detached ",
				"  docker compose -f docker/compose.yaml up -d --wait rabbitmq ",
				"  export AMQP_URL=amqp://user:password@host:5672/ ",
			},
		},
		{
			name:   "malformed URL",
			url:    "amqp://guest:" + secret + "%zz@127.0.0.1:5672/",
			status: `rabbitmq  missing  the URL in -url or AMQP_URL is malformed (invalid URL escape "%zz")`,
			fixes:  []string{"  write it as amqp://user:password@host:5672/vhost"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var buf bytes.Buffer
			err := doctor(ctx, []string{"-url", tt.url, "-brokers", brokertest.ClosedPort(t)}, &buf, noDocker)
			out := buf.String()
			if err == nil || !strings.Contains(err.Error(), "not ready: rabbitmq must be fixed") {
				t.Errorf("doctor returned %v; want the not-ready error (exit status 1)", err)
			}
			if !strings.Contains(out, tt.status+"\n") {
				t.Errorf("the output lacks the status line %q\noutput:\n%s", tt.status, out)
			}
			_, fixes, found := strings.Cut(out, "to fix rabbitmq (required: every RabbitMQ lab and test needs a broker):\n")
			if !found {
				t.Fatalf("the output has no fix for rabbitmq\noutput:\n%s", out)
			}
			fixes, _, _ = strings.Cut(fixes, "\n\n")
			for _, want := range tt.fixes {
				if !strings.Contains(fixes, want) {
					t.Errorf("the rabbitmq fix lacks %q\nfix:\n%s", want, fixes)
				}
			}
			if strings.Contains(out, secret) || strings.Contains(err.Error(), secret) {
				t.Errorf("the password shows in the output or the error")
			}
			if !strings.HasSuffix(out, "\nnot ready: fix rabbitmq first\n") {
				t.Errorf("the verdict is not \"not ready: fix rabbitmq first\"\noutput:\n%s", out)
			}
		})
	}
}

// TestDoctorKafkaBrokersSetButSilent: a KAFKA_BROKERS that does not answer
// would make the Kafka tests fail, so the doctor must say so and fail.
func TestDoctorKafkaBrokersSetButSilent(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	silent := brokertest.ClosedPort(t)
	m := machine{
		getenv: func(key string) string {
			if key == "KAFKA_BROKERS" {
				return silent
			}
			return ""
		},
		docker: noDocker.docker,
		podman: noDocker.podman,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var buf bytes.Buffer
	err := doctor(ctx, []string{"-url", rabbit.URL}, &buf, m)
	if err == nil || !strings.Contains(err.Error(), "kafka must be fixed") {
		t.Errorf("doctor returned %v; want the not-ready error about kafka", err)
	}
	for _, want := range []string{
		"kafka     missing  nothing answers at " + silent + " (connection refused)\n",
		"to fix kafka (required: KAFKA_BROKERS is set, so the tests use it and fail instead of falling back to the embedded Kafka):\n",
		"  or unset KAFKA_BROKERS to let the tests use the embedded Kafka\n",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("the output lacks %q\noutput:\n%s", want, buf.String())
		}
	}
}

// TestRealDockerCheckIsQuick runs the doctor as main does, with the real
// Docker check, and checks that the Docker line comes back quickly whether
// or not an engine answers.
func TestRealDockerCheckIsQuick(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var buf bytes.Buffer
	start := time.Now()
	if err := run(ctx, []string{"-url", rabbit.URL, "-brokers", brokertest.ClosedPort(t)}, &buf); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, buf.String())
	}
	elapsed := time.Since(start)
	if !regexp.MustCompile(`(?m)^docker    (ok|missing) `).MatchString(buf.String()) {
		t.Errorf("no docker line\noutput:\n%s", buf.String())
	}
	if elapsed > 15*time.Second {
		t.Errorf("the checks took %v; want well under the 5 s probe timeouts added up", elapsed)
	}
	t.Logf("all checks took %v", elapsed)
}

// TestDockerLineForPodman checks what the doctor says to a Podman user in
// each situation: the exact lines to set, or how to start the service.
func TestDockerLineForPodman(t *testing.T) {
	t.Parallel()
	const sock = "/run/user/1000/podman/podman.sock"
	up := func(context.Context) error { return nil }
	down := func(context.Context) error { return errors.New("no engine in this test") }
	exports := []string{
		"export DOCKER_HOST=unix://" + sock + " ",
		"export TESTCONTAINERS_RYUK_DISABLED=true ",
		"export TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1 ",
	}
	tests := []struct {
		name       string
		dockerHost string
		docker     func(context.Context) error
		sock       string
		answers    bool
		ok         bool
		detail     string
		fixes      []string
	}{
		{name: "DOCKER_HOST names Podman, which answers", dockerHost: "unix://" + sock, docker: up, ok: true,
			detail: "Podman answers at DOCKER_HOST=unix://" + sock + ": the tests will use containers"},
		{name: "DOCKER_HOST names Podman, which does not answer", dockerHost: "unix://" + sock, docker: down,
			detail: "DOCKER_HOST=unix://" + sock + " is set, but no engine answers there",
			fixes:  []string{"podman system service --time=0 unix://" + sock + " & ", "systemctl --user start podman.socket "}},
		{name: "DOCKER_HOST names something else that does not answer", dockerHost: "tcp://10.0.0.9:2376", docker: down,
			detail: "DOCKER_HOST=tcp://10.0.0.9:2376 is set, but no engine answers there",
			fixes:  []string{"or unset DOCKER_HOST"}},
		{name: "no DOCKER_HOST, Podman answers at its socket", docker: down, sock: sock, answers: true,
			detail: "no Docker engine answers, but Podman does at " + sock, fixes: exports},
		{name: "no DOCKER_HOST, Podman's socket is silent", docker: down, sock: sock,
			detail: "no Docker engine answers; Podman's socket " + sock + " is there, but nothing answers on it",
			fixes:  append([]string{"podman system service --time=0 unix://" + sock + " & "}, exports...)},
		{name: "nothing at all", docker: down, detail: "no Docker engine answers",
			fixes: []string{`eval "$(scripts/podman-up.sh)" `}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := machine{
				getenv: func(key string) string {
					if key == "DOCKER_HOST" {
						return tt.dockerHost
					}
					return ""
				},
				docker: tt.docker,
				podman: func(context.Context) (string, bool) { return tt.sock, tt.answers },
			}
			r := checkDocker(context.Background(), m, slog.New(slog.DiscardHandler))
			if r.ok != tt.ok || r.detail != tt.detail {
				t.Errorf("got ok=%t %q\nwant ok=%t %q", r.ok, r.detail, tt.ok, tt.detail)
			}
			fixes := strings.Join(r.fix, "\n")
			for _, want := range tt.fixes {
				if !strings.Contains(fixes, want) {
					t.Errorf("the fix lacks %q\nfix:\n%s", want, fixes)
				}
			}
			if r.ok && len(r.fix) > 0 {
				t.Errorf("an ok line with a fix: %q", r.fix)
			}
		})
	}
}

// TestDoctorOutputWithPodman checks the docs' block for a machine where
// Podman answers at its socket but DOCKER_HOST is not set.
func TestDoctorOutputWithPodman(t *testing.T) {
	t.Parallel()
	r := checkDocker(context.Background(), machine{
		getenv: noDocker.getenv,
		docker: noDocker.docker,
		podman: func(context.Context) (string, bool) { return "/run/user/1000/podman/podman.sock", true },
	}, slog.New(slog.DiscardHandler))
	var got strings.Builder
	fmt.Fprintf(&got, "%-9s %-8s %s\n\n", r.name, "missing", r.detail)
	fmt.Fprintf(&got, "to fix %s (%s):\n", r.name, r.why)
	for _, line := range r.fix {
		fmt.Fprintf(&got, "  %s\n", line)
	}
	for _, file := range docs {
		want, err := fencedBlockAfter(file, "Expected output with Podman")
		if err != nil {
			t.Fatal(err)
		}
		if err := labtest.Match(want, got.String()); err != nil {
			t.Errorf("the Podman block of %s is out of date: %v\noutput:\n%s", file, err, got.String())
		}
	}
}

// TestPodmanSockets checks where the doctor looks for Podman.
func TestPodmanSockets(t *testing.T) {
	t.Parallel()
	env := func(xdg string) func(string) string {
		return func(key string) string {
			if key == "XDG_RUNTIME_DIR" {
				return xdg
			}
			return ""
		}
	}
	for _, tt := range []struct {
		xdg  string
		uid  int
		want string
	}{
		{"/run/user/1000", 1000, "/run/user/1000/podman/podman.sock /run/podman/podman.sock"},
		{"", 1001, "/run/user/1001/podman/podman.sock /run/podman/podman.sock"},
		{"", 0, "/run/podman/podman.sock"},
	} {
		if got := strings.Join(podmanSockets(env(tt.xdg), tt.uid), " "); got != tt.want {
			t.Errorf("XDG_RUNTIME_DIR=%q uid %d: %s, want %s", tt.xdg, tt.uid, got, tt.want)
		}
	}
}

// TestPingSocket asks a real Docker-style API on a Unix socket, and a
// socket file that nothing serves (what a stopped service leaves behind).
func TestPingSocket(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sock := dir + "/api.sock"
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("listening on %s: %v", sock, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_ping" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, "OK")
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	if err := pingSocket(context.Background(), sock); err != nil {
		t.Errorf("ping of a serving socket: %v", err)
	}

	stale := dir + "/stale.sock"
	ln2, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatalf("listening on %s: %v", stale, err)
	}
	ln2.(*net.UnixListener).SetUnlinkOnClose(false)
	ln2.Close()
	if err := pingSocket(context.Background(), stale); err == nil {
		t.Error("ping of a socket nothing serves succeeded")
	}
}

// TestDoctorStopsOnCtrlC cancels the context as Ctrl-C does: the doctor
// stops between checks with the cancellation (main then exits 130) and
// prints no verdict it did not reach.
func TestDoctorStopsOnCtrlC(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var buf bytes.Buffer
	err := doctor(ctx, []string{"-url", "amqp://guest:guest@" + brokertest.ClosedPort(t) + "/", "-brokers", brokertest.ClosedPort(t)}, &buf, noDocker)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("doctor after Ctrl-C returned %v; want context.Canceled", err)
	}
	if got, want := buf.String(), "MyEvents doctor: checking what the labs need\n"; got != want {
		t.Errorf("printed %q; want only %q, no status lines and no verdict", got, want)
	}
}

// TestDoctorStopsOnCtrlCDuringTheChecks: a RabbitMQ or a Kafka that
// accepts the connection and never answers held the doctor for the whole
// probeTimeout (5 s), deaf to Ctrl-C. Now each check stops as soon as ctx
// ends, and the doctor returns ctx's error with no verdict.
func TestDoctorStopsOnCtrlCDuringTheChecks(t *testing.T) {
	t.Parallel()
	rabbit := brokertest.AMQP(t)
	for _, tc := range []struct{ name, url, brokers, want string }{
		{"rabbitmq", "amqp://guest:guest@" + brokertest.SilentPort(t) + "/", brokertest.ClosedPort(t), "checking RabbitMQ"},
		{"kafka", rabbit.URL, brokertest.SilentPort(t), "checking Kafka"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const patience = 200 * time.Millisecond // the Ctrl-C comes this long into the checks
			ctx, cancel := context.WithTimeout(context.Background(), patience)
			defer cancel()
			start := time.Now()
			var buf bytes.Buffer
			err := doctor(ctx, []string{"-url", tc.url, "-brokers", tc.brokers}, &buf, noDocker)
			if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(fmt.Sprint(err), tc.want) || took > probeTimeout/2 {
				t.Errorf("doctor with a silent %s, ctx ending after %v, returned after %v with %v; want %q and ctx's error at once", tc.name, patience, took.Round(time.Millisecond), err, tc.want)
			}
			if got, want := buf.String(), "MyEvents doctor: checking what the labs need\n"; got != want {
				t.Errorf("printed %q; want only %q, no status lines and no verdict", got, want)
			}
		})
	}
}

// TestGoVersionOK checks the version comparison on the strings
// runtime.Version returns.
func TestGoVersionOK(t *testing.T) {
	t.Parallel()
	for version, want := range map[string]bool{
		"go1.26.8":                    true,
		"go1.26":                      true,
		"go1.26rc1":                   true,
		"go1.27.0":                    true,
		"go1.100.1":                   true,
		"go1.25.9":                    false,
		"go1.9":                       false,
		"devel go1.27-abcdef Mon Jan": true,
		"weird":                       false,
	} {
		if got := goVersionOK(version); got != want {
			t.Errorf("goVersionOK(%q) = %t, want %t", version, got, want)
		}
	}
}

// TestEmbeddedKafkaServes starts -embedded-kafka on a free port, produces
// and consumes a record with sarama, then stops it as Ctrl-C does.
func TestEmbeddedKafkaServes(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &labtest.Buffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-embedded-kafka", "-kafka-port", "0"}, out) }()

	// Wait for the address it prints.
	var addr string
	listening := regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)
	brokertest.Eventually(t, 10*time.Second, func() error {
		m := listening.FindStringSubmatch(out.String())
		if m == nil {
			return fmt.Errorf("no address printed yet; output so far:\n%s", out.String())
		}
		addr = m[1]
		return nil
	})

	// Talk to it as a lab would: create a topic, produce, consume.
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	topic := brokertest.Name(t, "setup")
	admin, err := sarama.NewClusterAdmin([]string{addr}, cfg)
	if err != nil {
		t.Fatalf("connecting an admin client to %s: %v", addr, err)
	}
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false); err != nil {
		t.Fatalf("creating topic %s: %v", topic, err)
	}
	_ = admin.Close()

	producer, err := sarama.NewSyncProducer([]string{addr}, cfg)
	if err != nil {
		t.Fatalf("creating a producer: %v", err)
	}
	partition, offset, err := producer.SendMessage(&sarama.ProducerMessage{
		Topic: topic, Key: sarama.StringEncoder("location-1"), Value: sarama.StringEncoder("hello from 00-setup"),
	})
	if err != nil {
		t.Fatalf("producing: %v", err)
	}
	_ = producer.Close()

	consumer, err := sarama.NewConsumer([]string{addr}, cfg)
	if err != nil {
		t.Fatalf("creating a consumer: %v", err)
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(topic, partition, offset)
	if err != nil {
		t.Fatalf("consuming partition %d from offset %d: %v", partition, offset, err)
	}
	select {
	case msg := <-pc.Messages():
		if string(msg.Key) != "location-1" || string(msg.Value) != "hello from 00-setup" {
			t.Errorf("consumed key %q value %q; want location-1, hello from 00-setup", msg.Key, msg.Value)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the record did not come back within 10 s")
	}
	_ = pc.Close()

	// Ctrl-C: run returns nil and the port closes.
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after Ctrl-C: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the embedded Kafka did not stop within 10 s of Ctrl-C")
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after the stop", addr)
	}

	// What it printed matches the docs (with the default port).
	port := addr[strings.LastIndex(addr, ":")+1:]
	got := strings.ReplaceAll(out.String(), "127.0.0.1:"+port, "127.0.0.1:9092")
	for _, file := range docs {
		want, err := fencedBlockAfter(file, "Expected output of -embedded-kafka")
		if err != nil {
			t.Fatal(err)
		}
		if err := labtest.Match(want, got); err != nil {
			t.Errorf("the -embedded-kafka output does not match %s: %v\noutput:\n%s", file, err, got)
		}
	}
}

// TestEmbeddedKafkaPortTaken checks the sentence for a port in use.
func TestEmbeddedKafkaPortTaken(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("taking a port: %v", err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	var buf bytes.Buffer
	err = run(context.Background(), []string{"-embedded-kafka", "-kafka-port", fmt.Sprint(port)}, &buf)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("port %d is taken", port)) {
		t.Errorf("run returned %v; want an error saying port %d is taken", err, port)
	}
}

// fencedBlockAfter returns the lines of the first fenced block after the
// Markdown heading that contains heading.
func fencedBlockAfter(path, heading string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	inSection, inBlock := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case inBlock && strings.HasPrefix(line, "```"):
			return lines, nil
		case inBlock:
			lines = append(lines, line)
		case strings.HasPrefix(line, "#"):
			inSection = strings.Contains(line, heading)
		case inSection && strings.HasPrefix(line, "```"):
			inBlock = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%s has no fenced block under a heading containing %q", path, heading)
}
