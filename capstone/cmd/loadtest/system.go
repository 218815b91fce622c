package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"example.com/myevents/capstone/endpoint"
	"example.com/myevents/capstone/internal/app"
	"example.com/myevents/capstone/internal/sqldb"
	"example.com/myevents/capstone/msgqueue/rabbitmq"
)

// system is the two services this process runs, and how to tidy up after
// them.
type system struct {
	events, bookings *app.Running
	describe         string
	cleanups         []func() error
}

// startSystem starts BookingService, then EventService, on names of their
// own on the chosen broker and store.
func startSystem(ctx context.Context, s settings, log *slog.Logger) (sys *system, err error) {
	sys = &system{}
	defer func() {
		if err != nil {
			err = errors.Join(err, sys.stop())
		}
	}()
	suffix := randomSuffix()
	cfg := app.DefaultConfig(app.BookingService)
	cfg.Broker = s.broker
	cfg.HTTPAddr = "127.0.0.1:0"
	var brokerDesc string
	switch s.broker {
	case app.AMQP:
		cfg.AMQPURL = s.amqpURL
		cfg.Exchange = "loadtest." + suffix
		cfg.Queue = "loadtest." + suffix + ".bookingservice"
		sys.cleanups = append(sys.cleanups, func() error { return deleteAMQP(cfg) })
		brokerDesc = "RabbitMQ at " + endpoint.Redact(s.amqpURL)
	case app.Kafka:
		if s.brokers == "" {
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
			if err != nil {
				return sys, fmt.Errorf("starting the embedded Kafka: %w", err)
			}
			sys.cleanups = append(sys.cleanups, func() error { cluster.Close(); return nil })
			cfg.KafkaBrokers = cluster.ListenAddrs()
			brokerDesc = "embedded Kafka (kfake, in this process)"
		} else {
			cfg.KafkaBrokers = strings.FieldsFunc(s.brokers, func(r rune) bool { return r == ',' || r == ' ' })
			brokerDesc = "Kafka at " + s.brokers + " (topic loadtest." + suffix + " is left there)"
		}
		cfg.Topic = "loadtest." + suffix
		cfg.Group = "loadtest." + suffix + ".bookingservice"
	default:
		return sys, fmt.Errorf("unknown broker %q: use -broker amqp or -broker kafka", s.broker)
	}

	var eventsDB, bookingsDB, storeDesc string
	switch {
	case s.db == "sqlite":
		dir, err := os.MkdirTemp("", "myevents-loadtest-")
		if err != nil {
			return sys, err
		}
		sys.cleanups = append(sys.cleanups, func() error { return os.RemoveAll(dir) })
		eventsDB, bookingsDB = "sqlite:"+filepath.Join(dir, "eventservice.db"), "sqlite:"+filepath.Join(dir, "bookingservice.db")
		storeDesc = "SQLite files (WAL) in " + os.TempDir()
	case s.db == "memory":
		eventsDB, bookingsDB = "memory:", "memory:"
		storeDesc = "memory"
		if s.broker == app.Kafka {
			storeDesc += " (BookingService replays the log)"
		}
	case strings.HasPrefix(s.db, "postgres://") || strings.HasPrefix(s.db, "postgresql://"):
		dsn, drop, err := sqldb.FreshSchema(ctx, s.db, "loadtest_"+suffix)
		if err != nil {
			return sys, err
		}
		sys.cleanups = append(sys.cleanups, drop)
		eventsDB, bookingsDB = dsn, dsn
		storeDesc = "PostgreSQL at " + endpoint.Redact(s.db) + " (a schema of its own)"
	default:
		return sys, fmt.Errorf("unknown -db %s: use sqlite, memory or a postgres:// URL", endpoint.Quote(s.db))
	}
	sys.describe = fmt.Sprintf("broker %s, %s; store %s", s.broker, brokerDesc, storeDesc)

	cfg.DB = bookingsDB
	if sys.bookings, err = app.Start(ctx, cfg, app.Options{Logger: log, BookingGroup: s.group}); err != nil {
		return sys, err
	}
	cfg.Service, cfg.DB = app.EventService, eventsDB
	if sys.events, err = app.Start(ctx, cfg, app.Options{Logger: log}); err != nil {
		return sys, err
	}
	return sys, nil
}

// stop stops the services and removes what the run created.
func (s *system) stop() error {
	var errs []error
	for _, r := range []*app.Running{s.events, s.bookings} {
		if r != nil {
			errs = append(errs, r.Stop())
		}
	}
	for i := len(s.cleanups) - 1; i >= 0; i-- {
		errs = append(errs, s.cleanups[i]())
	}
	return errors.Join(errs...)
}

// deleteAMQP deletes the exchange and queues a run declared.
func deleteAMQP(cfg app.Config) error {
	conn, err := amqp.Dial(cfg.AMQPURL)
	if err != nil {
		return fmt.Errorf("cleaning up RabbitMQ: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("cleaning up RabbitMQ: %w", err)
	}
	return rabbitmq.DeleteTopology(ch, cfg.Exchange, cfg.Queue)
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
