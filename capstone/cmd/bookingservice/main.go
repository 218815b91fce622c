// Command bookingservice runs MyEvents' BookingService: it sells seats of
// the events it heard of on the broker (location.created, event.created,
// event.booked) and never more than a hall holds.
//
// Usage:
//
//	go run ./capstone/cmd/bookingservice                                  # RabbitMQ on 127.0.0.1:5672, SQLite file bookingservice.db
//	go run ./capstone/cmd/bookingservice -broker kafka                    # Kafka consumer group "bookingservice"
//	go run ./capstone/cmd/bookingservice -broker kafka -db memory:        # no database: replays the Kafka log at start-up
//
// Flags, each with an environment fallback:
//
//	-listen   LISTEN_ADDR    HTTP address (default :8282)
//	-broker   BROKER         amqp or kafka (default amqp)
//	-url      AMQP_URL       RabbitMQ (default amqp://guest:guest@127.0.0.1:5672/)
//	-brokers  KAFKA_BROKERS  Kafka, comma-separated (default 127.0.0.1:9092); given
//	                         without -broker or BROKER, it is refused: set BROKER=kafka
//	-db       DATABASE_URL   "" (SQLite file bookingservice.db in the working directory),
//	                         sqlite:PATH, postgres://..., or memory: (Kafka only)
//	-exchange                AMQP exchange (default events)
//	-queue                   AMQP queue (default bookingservice)
//	-topic                   Kafka topic (default events)
//	-group                   Kafka consumer group (default bookingservice)
//
// How it hears events depends on the broker and the store:
//
//   - RabbitMQ: its durable queue, bound for every event it handles at
//     start-up; what is emitted while it is down waits there.
//   - Kafka with a SQL store: a consumer group with committed offsets; a
//     restart resumes where it stopped.
//   - Kafka with memory: it replays the topic from the oldest record at
//     every start and answers 503 until it has caught up with the log
//     as it was at start-up.
//   - RabbitMQ with memory: refused, because a queue cannot be replayed:
//     a restart would forget every booking and sell the seats again.
//
// SIGTERM or Ctrl-C stops it gracefully: in-flight requests and the event
// being handled finish, then the broker connections close. A configuration
// it cannot use is one sentence on stderr and exit status 1.
package main

import "example.com/myevents/capstone/internal/app"

func main() { app.Main(app.Command(app.BookingService)) }
