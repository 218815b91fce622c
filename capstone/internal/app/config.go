// Package app wires a capstone service to the world: its configuration
// (flags with environment fallbacks), the broker it talks to (RabbitMQ or
// Kafka), its store, its HTTP server, and a graceful shutdown. The three
// commands (eventservice, bookingservice and the all-in-one myevents) share
// it, so each of them is a few lines.
//
// A service runs until its context ends (SIGTERM or Ctrl-C in the
// commands), then stops in this order: the HTTP server (no new requests,
// in-flight ones finish), the broker listener (the running handler
// finishes and its message is acknowledged), the service (its outbox relay
// stops; unsent events stay in the outbox), the emitter (outstanding emits
// are confirmed) and last the store.
package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"example.com/myevents/capstone/endpoint"
	"example.com/myevents/capstone/internal/sqldb"
)

// The services, by the name that also names their store file
// (SERVICE.db), their AMQP queue and their Kafka consumer group.
const (
	EventService   = "eventservice"
	BookingService = "bookingservice"
)

// The brokers a service can use.
const (
	AMQP  = "amqp"
	Kafka = "kafka"
)

// Defaults shared with the labs.
const (
	DefaultAMQPURL      = "amqp://guest:guest@127.0.0.1:5672/"
	DefaultKafkaBrokers = "127.0.0.1:9092"
	DefaultExchange     = "events"
	DefaultTopic        = "events"
)

// Config is what one service needs to run.
type Config struct {
	Service      string   // EventService or BookingService
	HTTPAddr     string   // HTTP address to serve on, such as ":8181"
	Broker       string   // AMQP or Kafka
	AMQPURL      string   // with Broker AMQP
	KafkaBrokers []string // with Broker Kafka
	DB           string   // "" (SQLite file SERVICE.db), "sqlite:PATH", "postgres://...", "memory:"
	Exchange     string   // AMQP topic exchange
	Topic        string   // Kafka topic
	Queue        string   // BookingService's AMQP queue
	Group        string   // BookingService's Kafka consumer group (SQL store only)
}

// DefaultConfig returns the configuration service runs with when no flag
// and no environment variable says otherwise.
func DefaultConfig(service string) Config {
	addr := ":8181"
	if service == BookingService {
		addr = ":8282"
	}
	return Config{
		Service:      service,
		HTTPAddr:     addr,
		Broker:       AMQP,
		AMQPURL:      DefaultAMQPURL,
		KafkaBrokers: endpoint.SplitList(DefaultKafkaBrokers),
		DB:           "",
		Exchange:     DefaultExchange,
		Topic:        DefaultTopic,
		Queue:        service,
		Group:        service,
	}
}

// ParseFlags reads the configuration of service from command-line
// arguments, falling back to environment variables (read with getenv), then
// to DefaultConfig. A flag given on the command line wins even when it is
// empty (-db "" picks the SQLite file although DATABASE_URL is set). Kafka
// brokers (-brokers or KAFKA_BROKERS) without a chosen broker (-broker or
// BROKER) are an error, not a silent run on RabbitMQ. With -h it writes the
// usage to usage and returns flag.ErrHelp.
func ParseFlags(service string, args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	cfg := DefaultConfig(service)
	fs := flag.NewFlagSet(service, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned as one sentence; -h prints below

	// The help text shows the built-in defaults, never the environment's
	// values: AMQP_URL and DATABASE_URL may hold passwords.
	httpAddr := fs.String("listen", cfg.HTTPAddr, "HTTP listen address (env LISTEN_ADDR)")
	broker := fs.String("broker", cfg.Broker, "message broker: amqp or kafka (env BROKER)")
	amqpURL := fs.String("url", cfg.AMQPURL, "AMQP URL of RabbitMQ, with -broker amqp (env AMQP_URL)")
	brokers := fs.String("brokers", DefaultKafkaBrokers, "Kafka bootstrap brokers, comma-separated, with -broker kafka (env KAFKA_BROKERS)")
	db := fs.String("db", cfg.DB, `store: "" for the SQLite file `+service+`.db in the working directory, "sqlite:PATH", "postgres://USER@HOST:PORT/DB" or "memory:" (env DATABASE_URL)`)
	exchange := fs.String("exchange", cfg.Exchange, "AMQP topic exchange the events go to")
	topic := fs.String("topic", cfg.Topic, "Kafka topic the events go to")
	var queue, group *string
	if service == BookingService {
		queue = fs.String("queue", cfg.Queue, "AMQP queue of this service (dead letters go to <queue>.dlq)")
		group = fs.String("group", cfg.Group, "Kafka consumer group of this service (with a SQL store)")
	}
	fs.Usage = func() {} // the flag package calls it on every error; -h is handled below

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(usage, "Usage of %s (flags fall back to the environment variables named):\n", service)
			fs.SetOutput(usage)
			fs.PrintDefaults()
			return Config{}, err
		}
		return Config{}, fmt.Errorf("reading the command line: %w (see -h)", err)
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("reading the command line: unexpected argument %q: %s takes flags only (see -h)", fs.Arg(0), service)
	}

	// A flag given wins; else its environment variable, if set; else the
	// default.
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	pick := func(flagName string, value *string, env string) string {
		if !given[flagName] && env != "" {
			if v := getenv(env); v != "" {
				return v
			}
		}
		return *value
	}
	// Kafka brokers named while the broker is left at its default would
	// run the service on RabbitMQ without a word: refuse that.
	brokerChosen := given["broker"] || getenv("BROKER") != ""
	switch {
	case brokerChosen:
	case given["brokers"]:
		return Config{}, errors.New("-brokers is given but no broker is chosen: set BROKER=kafka (or -broker kafka) to use Kafka, or leave out -brokers to use RabbitMQ")
	case getenv("KAFKA_BROKERS") != "":
		return Config{}, errors.New("KAFKA_BROKERS is set but no broker is chosen: set BROKER=kafka (or -broker kafka) to use Kafka, or unset KAFKA_BROKERS to use RabbitMQ")
	}
	cfg.HTTPAddr = pick("listen", httpAddr, "LISTEN_ADDR")
	cfg.Broker = strings.ToLower(pick("broker", broker, "BROKER"))
	cfg.AMQPURL = pick("url", amqpURL, "AMQP_URL")
	cfg.KafkaBrokers = endpoint.SplitList(pick("brokers", brokers, "KAFKA_BROKERS"))
	cfg.DB = pick("db", db, "DATABASE_URL")
	cfg.Exchange = *exchange
	cfg.Topic = *topic
	if queue != nil {
		cfg.Queue, cfg.Group = *queue, *group
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate checks the configuration before anything is opened, so a
// mistake costs one clear sentence instead of a half-started service.
func (c Config) Validate() error {
	switch c.Service {
	case EventService, BookingService:
	default:
		return fmt.Errorf("unknown service %q: it is %s or %s", c.Service, EventService, BookingService)
	}
	kind, err := sqldb.Parse(c.DB)
	if err != nil {
		return fmt.Errorf("choosing the store (-db or DATABASE_URL): %w", err)
	}
	switch c.Broker {
	case AMQP:
		if c.AMQPURL == "" {
			return errors.New("no AMQP URL: set -url or AMQP_URL, such as " + DefaultAMQPURL)
		}
		if c.Exchange == "" {
			return errors.New("the AMQP exchange name (-exchange) is empty")
		}
		if c.Service == BookingService && c.Queue == "" {
			return errors.New("the AMQP queue name (-queue) is empty")
		}
		// A queue hands each message over once and forgets it: a memory
		// store would start empty after a restart with nothing to rebuild
		// from, and sell every seat again.
		if c.Service == BookingService && kind == sqldb.Memory {
			return errors.New(`BookingService cannot keep its state in memory with RabbitMQ: a queue cannot be replayed, so a restart would forget every event and booking and sell the seats again; use a SQLite file (-db ""), PostgreSQL (-db postgres://...), or -broker kafka, whose log it rebuilds from`)
		}
	case Kafka:
		if len(c.KafkaBrokers) == 0 {
			return errors.New("no Kafka broker: set -brokers or KAFKA_BROKERS (host:port, comma-separated)")
		}
		if c.Topic == "" {
			return errors.New("the Kafka topic name (-topic) is empty")
		}
		if c.Service == BookingService && kind != sqldb.Memory && c.Group == "" {
			return errors.New("the Kafka consumer group name (-group) is empty")
		}
	default:
		return fmt.Errorf("unknown broker %q: use -broker amqp (RabbitMQ) or -broker kafka, or set BROKER", c.Broker)
	}
	if c.HTTPAddr == "" {
		return errors.New("the HTTP listen address (-listen or LISTEN_ADDR) is empty")
	}
	return nil
}

// OneLine flattens err's message to one line for the terminal: some
// drivers (pgx) list each address they tried on a line of its own.
func OneLine(err error) string {
	lines := strings.FieldsFunc(err.Error(), func(r rune) bool { return r == '\n' || r == '\r' })
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, " ")
}
