// Command eventservice runs MyEvents' EventService: the HTTP API for
// locations and events, which announces each new one on the broker
// (location.created, event.created).
//
// Usage:
//
//	go run ./capstone/cmd/eventservice                                   # RabbitMQ on 127.0.0.1:5672, SQLite file eventservice.db
//	go run ./capstone/cmd/eventservice -broker kafka -brokers 127.0.0.1:9092
//	go run ./capstone/cmd/eventservice -db postgres://postgres@127.0.0.1:5432/myevents
//
// Flags, each with an environment fallback:
//
//	-listen   LISTEN_ADDR    HTTP address (default :8181)
//	-broker   BROKER         amqp or kafka (default amqp)
//	-url      AMQP_URL       RabbitMQ (default amqp://guest:guest@127.0.0.1:5672/)
//	-brokers  KAFKA_BROKERS  Kafka, comma-separated (default 127.0.0.1:9092); given
//	                         without -broker or BROKER, it is refused: set BROKER=kafka
//	-db       DATABASE_URL   "" (SQLite file eventservice.db in the working directory),
//	                         sqlite:PATH, postgres://..., or memory:
//	-exchange                AMQP exchange (default events)
//	-topic                   Kafka topic (default events)
//
// SIGTERM or Ctrl-C stops it gracefully: in-flight requests finish, unsent
// events stay in the outbox for the next start. A configuration it cannot
// use (an unknown broker, a broker that does not answer, a bad -db) is one
// sentence on stderr and exit status 1.
package main

import "example.com/myevents/capstone/internal/app"

func main() { app.Main(app.Command(app.EventService)) }
