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

// CapstoneTopic is the capstone's Kafka topic (DefaultTopic in
// capstone/msgqueue/kafka): BookingService rebuilds its state by
// replaying it, so a lab must never write made-up events to it, nor
// delete it.
const CapstoneTopic = "events"

// CapstoneDeadLetterTopic is the capstone's dead-letter topic (the
// default "<topic>.dlq" in capstone/msgqueue/kafka): it keeps the records
// the capstone's listeners gave up on, with the reasons, so a lab must
// neither write to it nor delete it.
const CapstoneDeadLetterTopic = CapstoneTopic + ".dlq"

// CheckTopic refuses, before anything is dialed, a lab's -topic that
// Kafka would refuse only at the first request, once the run is under way
// (empty, longer than 249, "." or "..", or with a character other than a
// letter, a digit, '.', '_' or '-'), the capstone's topic and its
// dead-letter topic. own is the lab's default, named in the sentence;
// recreates says the lab deletes and recreates its topic.
func CheckTopic(topic, own string, recreates bool) error {
	if !validTopic(topic) {
		return fmt.Errorf("-topic must name a topic of the lab's own, such as %s: 1 to 249 letters, digits, '.', '_' or '-', and not \".\" or \"..\"; got %q", own, topic)
	}
	also := ""
	if recreates {
		also = ", and this lab deletes and recreates its topic"
	}
	switch topic {
	case CapstoneTopic:
		return fmt.Errorf("-topic %s is the capstone's topic, which BookingService replays%s: give the lab a topic of its own, such as %s", CapstoneTopic, also, own)
	case CapstoneDeadLetterTopic:
		return fmt.Errorf("-topic %s is the capstone's dead-letter topic, which keeps the records its listeners gave up on%s: give the lab a topic of its own, such as %s", CapstoneDeadLetterTopic, also, own)
	}
	return nil
}

// validTopic reports whether Kafka accepts name as a topic's name.
func validTopic(name string) bool {
	if name == "" || len(name) > 249 || name == "." || name == ".." {
		return false
	}
	for _, c := range name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

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
