// Package e2e holds the capstone's end-to-end tests: both services run in
// the test process through the same wiring as the commands
// (capstone/internal/app), talk over real HTTP, and exchange events over a
// real broker, RabbitMQ and Kafka in turn (labs/brokertest provides them;
// every test uses an exchange, queue, topic and group of its own).
//
//	go test -race -count=1 ./capstone/e2e/
//
// They cover event collaboration, the last-seat race, idempotent
// redelivery, restarts (SQLite file; Kafka log replay into memory), bad
// input and graceful shutdown. docs/capstone.md maps each pitfall of the
// original chapter to the test that proves it fixed.
package e2e
