package labkit

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/IBM/sarama"

	"example.com/myevents/capstone/endpoint"
)

// KafkaDown turns a failed connection into one sentence that names the
// brokers, says why, and says how to get a Kafka.
func KafkaDown(brokers []string, err error) error {
	where := strings.Join(brokers, ",")
	if !errors.Is(err, sarama.ErrOutOfBrokers) {
		return fmt.Errorf("connecting to Kafka at %s: %w", where, err)
	}
	// sarama wraps one error per attempt, a line each; keep each distinct
	// reason once, on one line.
	var reasons []string
	if cause := errors.Unwrap(err); cause != nil {
		for _, line := range strings.Split(cause.Error(), "\n") {
			if line = strings.TrimSpace(line); line != "" && !slices.Contains(reasons, line) {
				reasons = append(reasons, line)
			}
		}
	}
	why := ""
	if len(reasons) > 0 {
		why = " (" + strings.Join(reasons, "; ") + ")"
	}
	return fmt.Errorf("connecting to Kafka at %s: no broker answers%s; start one (`go run ./labs/00-setup -embedded-kafka` runs one on 127.0.0.1:9092) or point -brokers or KAFKA_BROKERS at a running Kafka", where, why)
}

// SplitBrokers turns "a:1, b:2" into its addresses (endpoint.SplitList).
func SplitBrokers(list string) []string { return endpoint.SplitList(list) }
