package brokertest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { Main(m) }

// fakes builds probes from fixed answers.
func fakes(env map[string]string, docker, amqpErr, kafkaErr error) probes {
	return probes{
		getenv: func(k string) string { return env[k] },
		docker: func(context.Context) error { return docker },
		amqp:   func(context.Context, string) error { return amqpErr },
		kafka:  func(context.Context, string) error { return kafkaErr },
	}
}

var errDown = errors.New("connection refused")

func TestChooseRabbitMQ(t *testing.T) {
	const explicit = "amqp://app:secret@broker.example:5672/"
	const ours = "localhost/myevents-rabbitmq:3.10-debian"
	tests := []struct {
		name        string
		env         map[string]string
		docker      error
		dial        error
		wantBackend Backend
		wantTarget  string
		wantImage   string // checked when not empty
		wantReuse   string // the container to share, checked always
		wantErr     string // substring; empty means no error
		wantNoBroke bool   // the error means "skip, or fail under CI"
	}{
		{name: "explicit URL wins over Docker and local", env: map[string]string{"AMQP_URL": explicit},
			wantBackend: FromEnvironment, wantTarget: explicit},
		{name: "unreachable explicit URL is a failure", env: map[string]string{"AMQP_URL": explicit}, dial: errDown,
			wantErr: "AMQP_URL=amqp://app:xxxxx@broker.example:5672/ is set but that broker does not answer"},
		{name: "Docker answers: the pinned image", wantBackend: FromContainer, wantImage: RabbitMQImage},
		{name: "Docker answers: the image from the environment", env: map[string]string{EnvRabbitMQImage: ours},
			wantBackend: FromContainer, wantImage: ours},
		{name: "no Docker, local broker answers", docker: errDown,
			wantBackend: FromLocal, wantTarget: DefaultAMQPURL},
		{name: "nothing at all", docker: errDown, dial: errDown,
			wantErr: "docker compose -f docker/compose.yaml up -d --wait rabbitmq", wantNoBroke: true},

		// BROKERTEST_RABBITMQ forces one backend.
		{name: "auto is the usual order", env: map[string]string{EnvRabbitMQ: "auto"}, docker: errDown,
			wantBackend: FromLocal, wantTarget: DefaultAMQPURL},
		{name: "forced container with an engine", env: map[string]string{EnvRabbitMQ: "container", EnvRabbitMQImage: ours},
			wantBackend: FromContainer, wantImage: ours},
		{name: "forced container without an engine is a failure, not a skip", env: map[string]string{EnvRabbitMQ: "container"}, docker: errDown,
			wantErr: "BROKERTEST_RABBITMQ=container, but no container engine answers (connection refused)"},
		{name: "forced container contradicts AMQP_URL", env: map[string]string{EnvRabbitMQ: "container", "AMQP_URL": explicit},
			wantErr: "BROKERTEST_RABBITMQ=container contradicts AMQP_URL=amqp://app:xxxxx@broker.example:5672/"},
		{name: "forced local although Docker answers", env: map[string]string{EnvRabbitMQ: "local"},
			wantBackend: FromLocal, wantTarget: DefaultAMQPURL},
		{name: "forced local that does not answer is a failure, not a skip", env: map[string]string{EnvRabbitMQ: "Local"}, dial: errDown,
			wantErr: "BROKERTEST_RABBITMQ=local, but nothing answers at amqp://guest:xxxxx@127.0.0.1:5672/"},
		{name: "forced environment", env: map[string]string{EnvRabbitMQ: "environment", "AMQP_URL": explicit},
			wantBackend: FromEnvironment, wantTarget: explicit},
		{name: "forced environment without AMQP_URL", env: map[string]string{EnvRabbitMQ: "environment"},
			wantErr: "BROKERTEST_RABBITMQ=environment, but AMQP_URL is not set"},
		// BROKERTEST_RABBITMQ_REUSE shares one container between packages.
		{name: "a container shared by name", env: map[string]string{EnvRabbitMQReuse: "myevents-ci-rabbitmq", EnvRabbitMQImage: ours},
			wantBackend: FromContainer, wantImage: ours, wantReuse: "myevents-ci-rabbitmq"},
		{name: "the shared name means nothing without an engine", env: map[string]string{EnvRabbitMQReuse: "myevents-ci-rabbitmq"}, docker: errDown,
			wantBackend: FromLocal, wantTarget: DefaultAMQPURL},
		{name: "a shared name no engine accepts", env: map[string]string{EnvRabbitMQReuse: "-my events"},
			wantErr: `BROKERTEST_RABBITMQ_REUSE="-my events" is not a container name`},
		{name: "a backend RabbitMQ does not have", env: map[string]string{EnvRabbitMQ: "embedded"},
			wantErr: "BROKERTEST_RABBITMQ=embedded is not one of auto, environment, container, local"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := chooseRabbitMQ(context.Background(), fakes(tc.env, tc.docker, tc.dial, nil))
			checkChoice(t, got, err, tc.wantBackend, tc.wantTarget, tc.wantErr, tc.wantNoBroke)
			if tc.wantImage != "" && got.image != tc.wantImage {
				t.Fatalf("image %q, want %q", got.image, tc.wantImage)
			}
			if got.reuse != tc.wantReuse {
				t.Fatalf("shared container %q, want %q", got.reuse, tc.wantReuse)
			}
		})
	}
}

func TestReusableOnlyWithoutRyuk(t *testing.T) {
	if err := reusable("shared", true); err != nil {
		t.Fatalf("with Ryuk off: %v", err)
	}
	err := reusable("shared", false)
	if err == nil || !strings.Contains(err.Error(), "set TESTCONTAINERS_RYUK_DISABLED=true too") {
		t.Fatalf("with Ryuk on: %v, want a refusal that says what to set", err)
	}
}

func TestSameImage(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"docker.io/library/rabbitmq:4.1-management", "rabbitmq:4.1-management", true},
		{"localhost/myevents-rabbitmq:3.10-debian", "localhost/myevents-rabbitmq:3.10-debian", true},
		{"rabbitmq:4.1-management", "rabbitmq:3.13-management", false},
		{"localhost/myevents-rabbitmq:3.10-debian", "rabbitmq:4.1-management", false},
		{"docker.io/library/rabbitmq:latest", "rabbitmq", true},
		{"localhost/myevents-rabbitmq:3.10-debian", "myevents-rabbitmq:3.10-debian", true},
		{"registry.example:5000/team/rabbitmq", "registry.example:5000/team/rabbitmq:latest", true},
		{"registry.example:5000/team/rabbitmq:4.1", "registry.example:5000/team/rabbitmq", false},
	} {
		if got := sameImage(tc.a, tc.b); got != tc.want {
			t.Errorf("sameImage(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestChooseKafka(t *testing.T) {
	const ours = "localhost/kafka:test"
	tests := []struct {
		name        string
		env         map[string]string
		docker      error
		dial        error
		wantBackend Backend
		wantTarget  string
		wantImage   string
		wantErr     string
	}{
		{name: "explicit brokers win over Docker", env: map[string]string{"KAFKA_BROKERS": "k1:9092,k2:9092"},
			wantBackend: FromEnvironment, wantTarget: "k1:9092,k2:9092"},
		{name: "unreachable explicit brokers are a failure", env: map[string]string{"KAFKA_BROKERS": "k1:9092"}, dial: errDown,
			wantErr: "KAFKA_BROKERS=k1:9092 is set but no Kafka answers there"},
		{name: "Docker answers: the pinned image", wantBackend: FromContainer, wantImage: KafkaImage},
		{name: "Docker answers: the image from the environment", env: map[string]string{EnvKafkaImage: ours},
			wantBackend: FromContainer, wantImage: ours},
		{name: "no Docker: embedded, never a skip", docker: errDown, wantBackend: FromEmbedded},

		// BROKERTEST_KAFKA forces one backend.
		{name: "forced embedded although Docker answers", env: map[string]string{EnvKafka: "embedded"},
			wantBackend: FromEmbedded},
		{name: "forced embedded contradicts KAFKA_BROKERS", env: map[string]string{EnvKafka: "embedded", "KAFKA_BROKERS": "k1:9092"},
			wantErr: "BROKERTEST_KAFKA=embedded contradicts KAFKA_BROKERS=k1:9092"},
		{name: "forced container with an engine", env: map[string]string{EnvKafka: "container"},
			wantBackend: FromContainer, wantImage: KafkaImage},
		{name: "forced container without an engine is a failure, not the embedded Kafka", env: map[string]string{EnvKafka: "container"}, docker: errDown,
			wantErr: "BROKERTEST_KAFKA=container, but no container engine answers"},
		{name: "forced environment without KAFKA_BROKERS", env: map[string]string{EnvKafka: "environment"},
			wantErr: "BROKERTEST_KAFKA=environment, but KAFKA_BROKERS is not set"},
		{name: "a backend Kafka does not have", env: map[string]string{EnvKafka: "local"},
			wantErr: "BROKERTEST_KAFKA=local is not one of auto, environment, container, embedded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := chooseKafka(context.Background(), fakes(tc.env, tc.docker, nil, tc.dial))
			checkChoice(t, got, err, tc.wantBackend, tc.wantTarget, tc.wantErr, false)
			if tc.wantImage != "" && got.image != tc.wantImage {
				t.Fatalf("image %q, want %q", got.image, tc.wantImage)
			}
		})
	}
}

// TestForcedBackendsAskOnlyForThemselves: a forced local RabbitMQ or
// embedded Kafka never waits for a container engine (one that exists but
// hangs costs seconds).
func TestForcedBackendsAskOnlyForThemselves(t *testing.T) {
	p := fakes(map[string]string{EnvRabbitMQ: "local", EnvKafka: "embedded"}, nil, nil, nil)
	p.docker = func(context.Context) error {
		t.Error("the container engine was asked")
		return nil
	}
	if got, err := chooseRabbitMQ(context.Background(), p); err != nil || got.backend != FromLocal {
		t.Errorf("RabbitMQ: got %+v, %v; want local", got, err)
	}
	if got, err := chooseKafka(context.Background(), p); err != nil || got.backend != FromEmbedded {
		t.Errorf("Kafka: got %+v, %v; want embedded", got, err)
	}
}

func checkChoice(t *testing.T, got choice, err error, backend Backend, target, wantErr string, noBroker bool) {
	t.Helper()
	if wantErr != "" {
		if err == nil {
			t.Fatalf("got backend %q, want error containing %q", got.backend, wantErr)
		}
		if !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("error %q does not contain %q", err, wantErr)
		}
		if _, isNoBroker := err.(errNoBroker); isNoBroker != noBroker {
			t.Fatalf("error %q: no-broker = %v, want %v", err, isNoBroker, noBroker)
		}
		return
	}
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if got.backend != backend || got.target != target {
		t.Fatalf("got backend %q target %q, want %q %q", got.backend, got.target, backend, target)
	}
}

// recorder is a testing.TB that records how resolve ended the test.
type recorder struct {
	testing.TB
	fatal, skip, errorf string
}

func (r *recorder) Errorf(format string, args ...any) { r.errorf = fmt.Sprintf(format, args...) }

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = format
	runtime.Goexit()
}
func (r *recorder) Skipf(format string, args ...any) {
	r.skip = format
	runtime.Goexit()
}

func runResolve(env map[string]string) *recorder {
	r := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		resolve(r, func(k string) string { return env[k] }, errNoBroker{howTo: "start a broker"})
	}()
	<-done
	return r
}

func TestNoBrokerSkipsLocallyButFailsUnderCI(t *testing.T) {
	if r := runResolve(nil); r.skip == "" || r.fatal != "" {
		t.Errorf("without CI: skip=%q fatal=%q, want a skip", r.skip, r.fatal)
	}
	for _, v := range []string{"true", "1", "yes"} {
		if r := runResolve(map[string]string{"CI": v}); r.fatal == "" || r.skip != "" {
			t.Errorf("CI=%s: skip=%q fatal=%q, want a failure", v, r.skip, r.fatal)
		}
	}
	if r := runResolve(map[string]string{"CI": "false"}); r.skip == "" {
		t.Errorf("CI=false: want a skip, got fatal=%q", r.fatal)
	}
}

func TestInCI(t *testing.T) {
	for v, want := range map[string]bool{"": false, "0": false, "false": false, " No ": false, "true": true, "1": true, "yes": true} {
		t.Setenv("CI", v)
		if got := InCI(); got != want {
			t.Errorf("CI=%q: InCI() = %v, want %v", v, got, want)
		}
	}
}

// TestDockerProbeIsFast checks the real probe: on a machine without a Docker
// engine the container path must be ruled out in milliseconds.
func TestDockerProbeIsFast(t *testing.T) {
	start := time.Now()
	err := dockerHealthy(context.Background())
	took := time.Since(start)
	if err == nil {
		t.Logf("a Docker engine answers (in %v): the container path is used", took)
		return
	}
	t.Logf("no Docker engine (%v), ruled out in %v", firstLine(err), took)
	if took > time.Second {
		t.Errorf("ruling out Docker took %v; it must take milliseconds", took)
	}
}

func TestExplicitAMQPURLAgainstRealBroker(t *testing.T) {
	rabbit := AMQP(t)
	t.Setenv(EnvRabbitMQ, "") // AMQP_URL alone decides here
	t.Setenv("AMQP_URL", rabbit.URL)
	got, err := chooseRabbitMQ(context.Background(), realProbes())
	if err != nil || got.backend != FromEnvironment || got.target != rabbit.URL {
		t.Fatalf("explicit working URL: got %+v, %v", got, err)
	}

	t.Setenv("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/")
	_, err = chooseRabbitMQ(context.Background(), realProbes())
	if err == nil || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("closed port: got %v, want a 'does not answer' failure", err)
	}

	u, err := url.Parse(rabbit.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), "definitely-wrong")
	t.Setenv("AMQP_URL", u.String())
	_, err = chooseRabbitMQ(context.Background(), realProbes())
	if err == nil || !strings.Contains(err.Error(), "credentials refused") {
		t.Fatalf("wrong password: got %v, want a 'credentials refused' failure", err)
	}
	if strings.Contains(err.Error(), "definitely-wrong") {
		t.Fatalf("the error leaks the password: %v", err)
	}
}

func TestExplicitKafkaBrokersAgainstRealBroker(t *testing.T) {
	kafka := Kafka(t)
	t.Setenv(EnvKafka, "") // KAFKA_BROKERS alone decides here
	t.Setenv("KAFKA_BROKERS", strings.Join(kafka.Brokers, ","))
	got, err := chooseKafka(context.Background(), realProbes())
	if err != nil || got.backend != FromEnvironment {
		t.Fatalf("explicit working brokers: got %+v, %v", got, err)
	}

	t.Setenv("KAFKA_BROKERS", "127.0.0.1:1")
	_, err = chooseKafka(context.Background(), realProbes())
	if err == nil || !strings.Contains(err.Error(), "no Kafka answers there") {
		t.Fatalf("closed port: got %v, want a 'no Kafka answers' failure", err)
	}
}

func TestRabbitMQCtlReachesTheBroker(t *testing.T) {
	rabbit := AMQP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := rabbit.Ctl(ctx, "status")
	if err != nil {
		t.Fatalf("rabbitmqctl status: %v", err)
	}
	if !strings.Contains(out, "RabbitMQ version") {
		t.Fatalf("rabbitmqctl status printed no version:\n%s", out)
	}
}

// TestCtlLeavesNoGoroutines: rabbitmqctl, run by a few tests at once, must
// leave nothing running behind it (in a container: no connection to the
// engine), or every leak check that spans a Ctl call would fail.
func TestCtlLeavesNoGoroutines(t *testing.T) {
	rabbit := AMQP(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := goleak.IgnoreCurrent()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if _, err := rabbit.Ctl(ctx, "list_connections", "name"); err != nil {
				t.Errorf("rabbitmqctl list_connections: %v", err)
			}
		})
	}
	wg.Wait()
	if err := goleak.Find(before); err != nil {
		t.Errorf("goroutines outlived rabbitmqctl on the %s broker: %v", rabbit.Backend, err)
	}
}

func TestNameIsUniqueAndPortable(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z0-9.-]+$`)
	a, b := Name(t, "q"), Name(t, "q")
	if a == b {
		t.Fatalf("two calls gave the same name %q", a)
	}
	for _, n := range []string{a, b} {
		if !valid.MatchString(n) || !strings.HasPrefix(n, "q.testnameisuniqueandportable.") {
			t.Fatalf("name %q is not prefix.test-name.suffix in [a-z0-9.-]", n)
		}
	}
}

func TestSplitBrokers(t *testing.T) {
	got := strings.Join(SplitBrokers(" a:1, ,b:2,"), "|")
	if got != "a:1|b:2" {
		t.Fatalf("SplitBrokers = %q, want a:1|b:2", got)
	}
}

func TestDiffIDsIsAMultisetComparison(t *testing.T) {
	missing, extra := DiffIDs([]string{"a", "b", "b", "c"}, []string{"c", "b", "d", "a", "a"})
	if strings.Join(missing, ",") != "b" || strings.Join(extra, ",") != "a,d" {
		t.Fatalf("DiffIDs = missing %v, extra %v; want missing [b], extra [a d]", missing, extra)
	}
	r := &recorder{}
	if !CheckIDs(r, "same", []string{"x", "y"}, []string{"y", "x"}) || r.errorf != "" {
		t.Fatalf("CheckIDs refused equal sets: %s", r.errorf)
	}
	if CheckIDs(r, "deliveries", []string{"x", "x"}, []string{"x", "y"}) {
		t.Fatal("CheckIDs accepted a duplicate in place of a missing ID")
	}
	if want := "deliveries: got 2 IDs, want 2; missing [y]; extra or repeated [x]"; r.errorf != want {
		t.Fatalf("CheckIDs said %q, want %q", r.errorf, want)
	}
}

func TestReceive(t *testing.T) {
	ch := make(chan int, 1)
	ch <- 7
	if got := Receive(t, ch, time.Second, "no value"); got != 7 {
		t.Errorf("Receive = %d, want 7", got)
	}
	r := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Receive(r, ch, 10*time.Millisecond, "no value")
	}()
	<-done
	if r.fatal != "%s within %v" {
		t.Errorf("with nothing to receive: fatal=%q, want the test failed", r.fatal)
	}
}
