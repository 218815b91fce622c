package labkit

import (
	"errors"
	"strings"
	"testing"

	"github.com/IBM/sarama"
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
