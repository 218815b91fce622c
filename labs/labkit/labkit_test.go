package labkit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/labs/brokertest"
)

func TestDialAMQPExplainsEachMistakeInOneSentence(t *testing.T) {
	tests := []struct {
		name, url, want string
	}{
		{"malformed", "amqp://guest:s3cret@127.0.0.1:notaport/", "is malformed"},
		{"wrong scheme", "http://guest:s3cret@127.0.0.1:5672/", "is malformed"},
		{"nothing listening", "amqp://guest:s3cret@127.0.0.1:1/", "nothing is listening there"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := DialAMQP(tc.url, "labkit-test")
			if err == nil {
				conn.Close()
				t.Fatalf("dialing %s succeeded", tc.url)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) || strings.Contains(msg, "s3cret") || strings.Contains(msg, "\n") {
				t.Fatalf("error %q: want one line containing %q and no password", msg, tc.want)
			}
		})
	}
}

func TestKafkaDownKeepsEachReasonOnce(t *testing.T) {
	refused := errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
	err := KafkaDown([]string{"127.0.0.1:1"}, sarama.Wrap(sarama.ErrOutOfBrokers, refused, refused))
	msg := err.Error()
	if strings.Count(msg, "connection refused") != 1 || strings.Contains(msg, "\n") ||
		!strings.Contains(msg, "go run ./labs/00-setup -embedded-kafka") {
		t.Fatalf("KafkaDown = %q: want one line, the reason once, and how to start a Kafka", msg)
	}
}

func TestSplitBrokersAndRedact(t *testing.T) {
	if got := strings.Join(SplitBrokers(" a:1, ,b:2,"), "|"); got != "a:1|b:2" {
		t.Errorf("SplitBrokers = %q, want a:1|b:2", got)
	}
	if got := Redact("amqp://guest:s3cret@host:5672/"); got != "amqp://guest:xxxxx@host:5672/" {
		t.Errorf("Redact = %q", got)
	}
}

// TestConnectKafkaStopsOnCtrlC: a broker that accepts the connection and
// never answers held sarama.NewClient for three minutes, deaf to Ctrl-C.
// ConnectKafka returns at once when ctx ends.
func TestConnectKafkaStopsOnCtrlC(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		c, err := ConnectKafka(ctx, []string{brokertest.SilentPort(t)}, sarama.NewConfig())
		if c != nil {
			c.Close()
		}
		done <- err
	}()
	cancel() // Ctrl-C
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("ConnectKafka after Ctrl-C = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ConnectKafka ignored Ctrl-C for 5 s")
	}
}

// TestConnectKafkaGivesUpOnSilence: without Ctrl-C it gives up after
// answerWait with one sentence that says what is there.
func TestConnectKafkaGivesUpOnSilence(t *testing.T) {
	addr := brokertest.SilentPort(t)
	c, err := connectKafka(context.Background(), []string{addr}, sarama.NewConfig(), 200*time.Millisecond)
	if c != nil {
		c.Close()
	}
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "no Kafka answered within 200ms") {
		t.Errorf("ConnectKafka to a silent listener = %v, want one sentence naming %s and the wait", err, addr)
	}
}

// TestCheckTopic: what Kafka refuses only at the first request, and the
// capstone's topic and its dead-letter topic, are refused with a sentence naming the lab's own
// topic; a good name passes.
func TestCheckTopic(t *testing.T) {
	for _, tc := range []struct {
		topic     string
		recreates bool
		want      string // "" for no error
	}{
		{"lab99.things", false, ""},
		{"a_b-c.D9", true, ""},
		{strings.Repeat("t", 249), false, ""},
		{"", false, `-topic must name a topic of the lab's own, such as lab99.things: 1 to 249 letters, digits, '.', '_' or '-', and not "." or ".."; got ""`},
		{"my topic", false, `got "my topic"`},
		{".", false, "-topic must name a topic"},
		{"..", false, "-topic must name a topic"},
		{strings.Repeat("t", 250), false, "-topic must name a topic"},
		{"café", false, "-topic must name a topic"},
		{"events", false, "-topic events is the capstone's topic, which BookingService replays: give the lab a topic of its own, such as lab99.things"},
		{"events", true, "-topic events is the capstone's topic, which BookingService replays, and this lab deletes and recreates its topic: give the lab a topic of its own, such as lab99.things"},
		{"events.dlq", false, "-topic events.dlq is the capstone's dead-letter topic, which keeps the records its listeners gave up on: give the lab a topic of its own, such as lab99.things"},
		{"events.dlq", true, "-topic events.dlq is the capstone's dead-letter topic, which keeps the records its listeners gave up on, and this lab deletes and recreates its topic: give the lab a topic of its own, such as lab99.things"},
		{"events.dlq.lab", false, ""},
	} {
		err := CheckTopic(tc.topic, "lab99.things", tc.recreates)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("CheckTopic(%.20q) = %v, want nil", tc.topic, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("CheckTopic(%.20q, recreates %v) = %v, want an error containing %q", tc.topic, tc.recreates, err, tc.want)
		}
	}
}

// TestDialAMQPContextStopsOnCtrlC: a server that accepts the connection and
// never answers held DialAMQP for DialTimeout (5 s), deaf to Ctrl-C.
// DialAMQPContext returns as soon as ctx ends, with ctx's error.
func TestDialAMQPContextStopsOnCtrlC(t *testing.T) {
	url := "amqp://guest:s3cret@" + brokertest.SilentPort(t) + "/"
	const patience = 200 * time.Millisecond // the Ctrl-C comes this long into the dial
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		conn, err := DialAMQPContext(ctx, url, "labkit-test")
		if conn != nil {
			conn.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		took := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) || took > DialTimeout/2 {
			t.Errorf("DialAMQPContext to a silent server, with ctx ending after %v, returned after %v with %v; want ctx's error at once", patience, took.Round(time.Millisecond), err)
		}
		if err != nil && (strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "\n")) {
			t.Errorf("error %q: want one line and no password", err)
		}
	case <-time.After(2 * DialTimeout):
		t.Fatalf("DialAMQPContext has not returned %v after its ctx ended", 2*DialTimeout)
	}
}
