package labkit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

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

// KafkaAnswerWait bounds how long ConnectKafka waits for a broker's
// answer.
const KafkaAnswerWait = 10 * time.Second

// ConnectKafka is sarama.NewClient that stops waiting when ctx ends
// (Ctrl-C: it returns ctx's error) or when no broker answered within
// KafkaAnswerWait. A broker that accepts the connection and never answers
// (paused, or a program that is not Kafka) held sarama.NewClient for three
// minutes, deaf to Ctrl-C. Its errors are KafkaDown's sentence.
func ConnectKafka(ctx context.Context, brokers []string, cfg *sarama.Config) (sarama.Client, error) {
	return connectKafka(ctx, brokers, cfg, KafkaAnswerWait)
}

func connectKafka(ctx context.Context, brokers []string, cfg *sarama.Config, wait time.Duration) (sarama.Client, error) {
	type result struct {
		client sarama.Client
		err    error
	}
	done := make(chan result, 1)
	go func() {
		c, err := sarama.NewClient(brokers, cfg)
		done <- result{c, err}
	}()
	// Given up on: close the client if it comes after all.
	abandon := func() {
		go func() {
			if r := <-done; r.client != nil {
				_ = r.client.Close()
			}
		}()
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, KafkaDown(brokers, r.err)
		}
		return r.client, nil
	case <-ctx.Done():
		abandon()
		return nil, ctx.Err()
	case <-timer.C:
		abandon()
		return nil, fmt.Errorf("connecting to Kafka at %s: no Kafka answered within %s (the address does not answer, or what answers there is not Kafka, or it is paused); check the address in -brokers or KAFKA_BROKERS (`go run ./labs/00-setup` checks it)", strings.Join(brokers, ","), wait)
	}
}

// SplitBrokers turns "a:1, b:2" into its addresses (endpoint.SplitList).
func SplitBrokers(list string) []string { return endpoint.SplitList(list) }
