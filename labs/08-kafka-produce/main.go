// Command 08-kafka-produce shows the two ways sarama writes to Kafka: the
// SyncProducer, which waits for the broker's answer to every message, and
// the AsyncProducer, which keeps messages flowing and reports each result
// on a channel.
//
// It creates its topic with several partitions through the cluster admin,
// sends a few keyed bookings with the SyncProducer and prints the partition
// and offset each one got (the same key always lands on the same
// partition), then sends -n bookings with each producer and prints both
// rates. Both producers wait for all in-sync replicas (acks=all) and are
// idempotent, so a retry never writes a message twice.
//
// Usage:
//
//	go run ./labs/08-kafka-produce [-brokers 127.0.0.1:9092] [-topic lab08.events] [-partitions 4] [-n 20000] [-keep]
//
// Start an embedded Kafka first if you have none: go run ./labs/00-setup -embedded-kafka
//
// The topic is the lab's own, lab08.events, not the capstone's "events":
// BookingService rebuilds its state by replaying "events", and pointed at
// the same Kafka it would apply the lab's ~40,000 made-up bookings as well,
// so -topic events is refused.
// A topic the run created is deleted at the end, also on Ctrl-C, unless
// -keep is given. A topic that already existed (kept by an earlier run, or
// someone else's) is used as it is and left in place: the lab deletes only
// what it made.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/labs/labkit"
)

// defaultBrokers is the local development Kafka.
const defaultBrokers = "127.0.0.1:9092"

// demoKeys are the event IDs the SyncProducer demo books, twice each. The
// record key decides the partition: metallica and muse happen to share one.
var demoKeys = []string{"metallica", "adele", "oasis", "muse"}

// bulkKeys is how many different event IDs the throughput runs spread over.
const bulkKeys = 16

// bookingDate is the date every booking carries, so runs write the same
// bytes.
var bookingDate = time.Date(2026, 6, 1, 20, 0, 0, 0, time.UTC)

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

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("08-kafka-produce", flag.ContinueOnError)
	brokerList := fs.String("brokers", "", "Kafka bootstrap brokers, comma-separated (default $KAFKA_BROKERS, else "+defaultBrokers+")")
	topic := fs.String("topic", "lab08.events", "name of the topic to create (if missing) and write to; a topic this run created is deleted at the end unless -keep")
	partitions := fs.Int("partitions", 4, "partition count for the topic, if this run creates it")
	n := fs.Int("n", 20000, "bookings to send with each producer for the throughput comparison")
	keep := fs.Bool("keep", false, "keep the topic at the end instead of deleting it; the next run appends to it and leaves it in place")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; see -h", fs.Args())
	}
	if *partitions < 1 || *n < 1 {
		return fmt.Errorf("-partitions and -n must be at least 1")
	}
	// Refuse a name Kafka would refuse only once the run is under way,
	// and the capstone's topic, which it would accept, before connecting.
	if err := labkit.CheckTopic(*topic, "lab08.events", false); err != nil {
		return err
	}
	// The environment supplies the brokers unless -brokers does.
	if *brokerList == "" {
		*brokerList = labkit.EnvOr("KAFKA_BROKERS", defaultBrokers)
	}
	brokers := labkit.SplitBrokers(*brokerList)
	if len(brokers) == 0 {
		return errors.New("no Kafka broker given: pass -brokers host:port or set KAFKA_BROKERS")
	}

	// Configure the producers once: every message waits for all in-sync
	// replicas, and the idempotent producer numbers its batches so the
	// broker drops a retried duplicate. Idempotence needs acks=all and at
	// most one request in flight per broker connection in sarama.
	cfg := sarama.NewConfig()
	cfg.ClientID = "myevents-08-kafka-produce"
	cfg.Version = sarama.V3_6_0_0 // say which protocol to speak instead of relying on sarama's default
	cfg.Net.DialTimeout = 5 * time.Second
	cfg.Metadata.Retry.Max = 1
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Idempotent = true
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.Partitioner = sarama.NewHashPartitioner // the same key, the same partition
	cfg.Producer.Return.Successes = true                 // the SyncProducer needs it; the async one reports offsets with it
	cfg.Producer.Return.Errors = true

	// Connect. The client fetches the cluster's metadata from the first
	// bootstrap broker that answers.
	client, err := labkit.ConnectKafka(ctx, brokers, cfg)
	if err != nil {
		return err
	}
	// The admin shares the client, and closing the admin closes the client.
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		client.Close()
		return fmt.Errorf("creating the cluster admin: %w", err)
	}
	defer admin.Close()
	var cluster []string
	for _, b := range client.Brokers() {
		cluster = append(cluster, b.Addr())
	}
	slices.Sort(cluster)
	fmt.Fprintf(out, "bootstrap brokers: %s\n", strings.Join(brokers, ","))
	fmt.Fprintf(out, "cluster brokers:   %s\n", strings.Join(cluster, ","))

	// Create the topic explicitly: an Apache Kafka broker may auto-create it
	// with its own defaults on first use, the embedded one does not at all.
	// A topic that already exists keeps its partition count, and what is
	// on it: this run did not make it, so it does not delete it either.
	err = admin.CreateTopic(*topic, &sarama.TopicDetail{
		NumPartitions:     int32(*partitions),
		ReplicationFactor: -1, // the broker's default.replication.factor
	}, false /* validate only */)
	created := err == nil
	switch {
	case created:
		slog.Info("created topic", "topic", *topic, "partitions", *partitions)
	case errors.Is(err, sarama.ErrTopicAlreadyExists):
		slog.Info("topic already exists; keeping it as it is, and leaving it at the end", "topic", *topic)
	default:
		return fmt.Errorf("creating topic %s: %w", *topic, err)
	}
	// Whatever happens below, delete the topic when we leave if this run
	// created it, unless -keep.
	deleted := *keep || !created
	defer func() {
		if !deleted {
			if err := admin.DeleteTopic(*topic); err != nil {
				slog.Warn("deleting topic", "topic", *topic, "err", err)
			}
		}
	}()
	count, err := partitionCount(ctx, client, *topic)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "topic %s: %d partitions\n", *topic, count)

	// SyncProducer: SendMessage returns once the broker has written the
	// message to all in-sync replicas, with the partition and offset it got.
	syncProducer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		return fmt.Errorf("creating the SyncProducer: %w", err)
	}
	defer syncProducer.Close()
	fmt.Fprintln(out)
	fmt.Fprintln(out, "SyncProducer, one booking at a time, record key = event ID:")
	// booking, this lab's exercise (solution.go; the template is
	// exercise.go), builds each record, keyed by its event ID.
	for round := range 2 {
		for i, key := range demoKeys {
			msg, err := booking(*topic, fmt.Sprintf("demo-%d", round*len(demoKeys)+i+1), key)
			if err != nil {
				return err
			}
			partition, offset, err := syncProducer.SendMessage(msg)
			if err != nil {
				return fmt.Errorf("sending a booking for %s to %s: %w", key, *topic, err)
			}
			fmt.Fprintf(out, "  %-10s -> partition %d, offset %d\n", key, partition, offset)
		}
	}

	// Throughput: -n bookings through each producer, spread over bulkKeys
	// event IDs.
	syncElapsed, err := produceSync(ctx, syncProducer, *topic, "sync", *n)
	if err != nil {
		return err
	}
	// produceAsync, the exercise's second half, keeps Input fed while it
	// reads every result.
	asyncProducer, err := sarama.NewAsyncProducerFromClient(client)
	if err != nil {
		return fmt.Errorf("creating the AsyncProducer: %w", err)
	}
	asyncElapsed, err := produceAsync(ctx, asyncProducer, *topic, "async", *n)
	if closeErr := asyncProducer.Close(); err == nil && closeErr != nil {
		err = fmt.Errorf("closing the AsyncProducer: %w", closeErr)
	}
	if err != nil {
		return err
	}
	syncRate := float64(*n) / syncElapsed.Seconds()
	asyncRate := float64(*n) / asyncElapsed.Seconds()
	fmt.Fprintln(out)
	fmt.Fprintf(out, "throughput, %d bookings with each producer (acks=all, idempotent):\n", *n)
	fmt.Fprintf(out, "  SyncProducer   %.2fs  %.0f msg/s\n", syncElapsed.Seconds(), syncRate)
	fmt.Fprintf(out, "  AsyncProducer  %.2fs  %.0f msg/s\n", asyncElapsed.Seconds(), asyncRate)
	fmt.Fprintf(out, "  the AsyncProducer was %.1f times as fast\n", asyncRate/syncRate)

	// Delete the topic and everything in it if this run created it,
	// unless -keep.
	fmt.Fprintln(out)
	switch {
	case *keep:
		fmt.Fprintf(out, "kept topic %s (-keep): the next run appends to it and leaves it in place\n", *topic)
		return nil
	case !created:
		fmt.Fprintf(out, "left topic %s in place: it existed before this run, which deletes only a topic it created\n", *topic)
		return nil
	}
	deleted = true
	if err := admin.DeleteTopic(*topic); err != nil {
		return fmt.Errorf("deleting topic %s: %w", *topic, err)
	}
	fmt.Fprintf(out, "deleted topic %s\n", *topic)
	return nil
}

// bulkBooking is the i-th booking of a throughput run.
func bulkBooking(topic, prefix string, i int) (*sarama.ProducerMessage, error) {
	return booking(topic, fmt.Sprintf("%s-%06d", prefix, i), fmt.Sprintf("event-%02d", i%bulkKeys))
}

// produceSync sends n bookings one after the other and returns how long
// that took. Each SendMessage is a full round trip to the broker.
func produceSync(ctx context.Context, p sarama.SyncProducer, topic, prefix string, n int) (time.Duration, error) {
	start := time.Now()
	for i := range n {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("interrupted after %d of %d bookings with the SyncProducer: %w", i, n, err)
		}
		msg, err := bulkBooking(topic, prefix, i)
		if err != nil {
			return 0, err
		}
		if _, _, err := p.SendMessage(msg); err != nil {
			return 0, fmt.Errorf("sending booking %d with the SyncProducer: %w", i, err)
		}
	}
	return time.Since(start), nil
}

// partitionCount asks the cluster how many partitions the topic has. A new
// topic can take a moment to appear in the metadata of a real cluster.
func partitionCount(ctx context.Context, client sarama.Client, topic string) (int, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := client.RefreshMetadata(topic)
		if err == nil {
			var ids []int32
			if ids, err = client.Partitions(topic); err == nil && len(ids) > 0 {
				return len(ids), nil
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("reading the partitions of topic %s: %v", topic, err)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
