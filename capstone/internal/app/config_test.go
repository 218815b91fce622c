package app

import (
	"bytes"
	"errors"
	"flag"
	"slices"
	"strings"
	"testing"
)

// env returns a getenv over a fixed map.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestParseFlagsDefaults(t *testing.T) {
	for _, service := range []string{EventService, BookingService} {
		cfg, err := ParseFlags(service, nil, env(nil), nil)
		if err != nil {
			t.Fatalf("%s: %v", service, err)
		}
		want := DefaultConfig(service)
		if cfg.HTTPAddr != want.HTTPAddr || cfg.Broker != AMQP || cfg.AMQPURL != DefaultAMQPURL ||
			!slices.Equal(cfg.KafkaBrokers, []string{"127.0.0.1:9092"}) || cfg.DB != "" ||
			cfg.Exchange != "events" || cfg.Topic != "events" || cfg.Queue != service || cfg.Group != service {
			t.Errorf("%s defaults = %+v", service, cfg)
		}
	}
	if DefaultConfig(EventService).HTTPAddr != ":8181" || DefaultConfig(BookingService).HTTPAddr != ":8282" {
		t.Error("default listen addresses are not :8181 and :8282")
	}
}

func TestParseFlagsEnvironmentAndFlags(t *testing.T) {
	vars := map[string]string{
		"LISTEN_ADDR":   "127.0.0.1:9000",
		"BROKER":        "KAFKA",
		"AMQP_URL":      "amqp://u:p@rabbit:5672/",
		"KAFKA_BROKERS": "k1:9092, k2:9092,",
		"DATABASE_URL":  "postgres://postgres@db:5432/myevents",
	}
	cfg, err := ParseFlags(BookingService, nil, env(vars), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != "127.0.0.1:9000" || cfg.Broker != Kafka || cfg.AMQPURL != "amqp://u:p@rabbit:5672/" ||
		!slices.Equal(cfg.KafkaBrokers, []string{"k1:9092", "k2:9092"}) || cfg.DB != "postgres://postgres@db:5432/myevents" {
		t.Errorf("from the environment: %+v", cfg)
	}

	// Flags win over the environment, even when empty.
	cfg, err = ParseFlags(BookingService, []string{
		"-listen", ":1", "-broker", "amqp", "-url", "amqp://x:y@h:1/", "-brokers", "b:1", "-db", "",
		"-exchange", "ex", "-topic", "tp", "-queue", "q", "-group", "g",
	}, env(vars), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != ":1" || cfg.Broker != AMQP || cfg.AMQPURL != "amqp://x:y@h:1/" || !slices.Equal(cfg.KafkaBrokers, []string{"b:1"}) ||
		cfg.DB != "" || cfg.Exchange != "ex" || cfg.Topic != "tp" || cfg.Queue != "q" || cfg.Group != "g" {
		t.Errorf("from flags: %+v", cfg)
	}
}

func TestParseFlagsErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		service string
		args    []string
		vars    map[string]string
		want    string
	}{
		{"unknown broker", EventService, []string{"-broker", "nats"}, nil, `unknown broker "nats": use -broker amqp (RabbitMQ) or -broker kafka`},
		{"unknown broker from env", BookingService, nil, map[string]string{"BROKER": "sqs"}, `unknown broker "sqs"`},
		{"bad DSN", EventService, []string{"-db", "mysql://root@db/x"}, nil, `unknown database "mysql://root@db/x": use ""`},
		{"bad DSN hides the password", BookingService, nil, map[string]string{"DATABASE_URL": "mysql://root:secret@db/x"}, `mysql://root:xxxxx@db/x`},
		{"key=value DSN hides the password", EventService, []string{"-db", "host=db password=secret"}, nil, `unknown database <hidden: it may hold a password>`},
		{"memory with RabbitMQ", BookingService, []string{"-db", "memory:"}, nil, "BookingService cannot keep its state in memory with RabbitMQ"},
		{"no Kafka broker", EventService, []string{"-broker", "kafka", "-brokers", " , "}, nil, "no Kafka broker: set -brokers or KAFKA_BROKERS"},
		{"empty queue", BookingService, []string{"-queue", ""}, nil, "queue name (-queue) is empty"},
		{"empty listen", EventService, []string{"-listen", ""}, nil, "listen address"},
		{"unknown flag", EventService, []string{"-port", "1"}, nil, "flag provided but not defined: -port"},
		{"queue is not an EventService flag", EventService, []string{"-queue", "q"}, nil, "not defined: -queue"},
		{"stray argument", BookingService, []string{"kafka"}, nil, `unexpected argument "kafka"`},
		{"KAFKA_BROKERS without BROKER", BookingService, nil, map[string]string{"KAFKA_BROKERS": "k:9092"},
			"KAFKA_BROKERS is set but no broker is chosen: set BROKER=kafka (or -broker kafka) to use Kafka, or unset KAFKA_BROKERS to use RabbitMQ"},
		{"-brokers without -broker", EventService, []string{"-brokers", "k:9092"}, nil, "-brokers is given but no broker is chosen: set BROKER=kafka (or -broker kafka)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var usage bytes.Buffer
			_, err := ParseFlags(tc.service, tc.args, env(tc.vars), &usage)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("the error shows the password: %v", err)
			}
			if usage.Len() != 0 {
				t.Errorf("an error printed the usage too:\n%s", usage.String())
			}
		})
	}
}

// TestKafkaBrokersNeedAChosenBroker: Kafka brokers named with the broker
// left at its default (RabbitMQ) are refused above; naming the broker,
// either one, makes the choice explicit.
func TestKafkaBrokersNeedAChosenBroker(t *testing.T) {
	for _, tc := range []struct {
		vars map[string]string
		args []string
		want string
	}{
		{map[string]string{"KAFKA_BROKERS": "k:9092", "BROKER": "kafka"}, nil, Kafka},
		{map[string]string{"KAFKA_BROKERS": "k:9092", "BROKER": "amqp"}, nil, AMQP},
		{map[string]string{"KAFKA_BROKERS": "k:9092"}, []string{"-broker", "amqp"}, AMQP},
		{nil, []string{"-broker", "kafka", "-brokers", "k:9092"}, Kafka},
		{map[string]string{"KAFKA_BROKERS": ""}, nil, AMQP},
	} {
		cfg, err := ParseFlags(BookingService, tc.args, env(tc.vars), nil)
		if err != nil || cfg.Broker != tc.want {
			t.Errorf("%v %v: broker %q, %v; want %q", tc.vars, tc.args, cfg.Broker, err, tc.want)
		}
	}
}

func TestParseFlagsHelp(t *testing.T) {
	var usage bytes.Buffer
	_, err := ParseFlags(BookingService, []string{"-h"}, env(map[string]string{"AMQP_URL": "amqp://u:secret@h/"}), &usage)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("error = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"-listen", "LISTEN_ADDR", "-broker", "BROKER", "-url", "AMQP_URL", "-brokers", "KAFKA_BROKERS", "-db", "DATABASE_URL", "-queue", "-group"} {
		if !strings.Contains(usage.String(), want) {
			t.Errorf("usage does not mention %s:\n%s", want, usage.String())
		}
	}
	if strings.Contains(usage.String(), "secret") {
		t.Errorf("the usage shows the environment's password:\n%s", usage.String())
	}
}

func TestOneLine(t *testing.T) {
	err := errors.New("connecting: failed:\n\thost a: refused\n\thost b: refused")
	if got, want := OneLine(err), "connecting: failed: host a: refused host b: refused"; got != want {
		t.Errorf("OneLine = %q, want %q", got, want)
	}
}
