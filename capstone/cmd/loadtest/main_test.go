package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"example.com/myevents/labs/brokertest"
)

func TestMain(m *testing.M) { brokertest.Main(m) }

// TestSmallRun runs a short load on each broker and checks the report.
func TestSmallRun(t *testing.T) {
	for _, tc := range []struct {
		name string
		args func(t *testing.T) []string
	}{
		{"amqp-sqlite", func(t *testing.T) []string { return []string{"-broker", "amqp", "-url", brokertest.AMQP(t).URL} }},
		{"kafka-sqlite", func(t *testing.T) []string {
			return []string{"-broker", "kafka", "-brokers", strings.Join(brokertest.Kafka(t).Brokers, ",")}
		}},
		{"kafka-memory", func(t *testing.T) []string { return []string{"-broker", "kafka", "-db", "memory"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, stderr bytes.Buffer
			args := append(tc.args(t), "-n", "40", "-c", "4", "-warmup", "5")
			if err := run(context.Background(), args, &out, &stderr); err != nil {
				t.Fatalf("run %v: %v\nstderr:\n%s", args, err, stderr.String())
			}
			for _, want := range []string{
				`(?m)^setup: +broker \w+, .*; store .*; \d+ CPUs`,
				`(?m)^load: +40 bookings of 1 seat, 4 concurrent clients, after 5 warm-up bookings$`,
				`(?m)^throughput: +\d+ bookings/s \(40 x 201 in `,
				`(?m)^latency: +p50 \S+ +p90 \S+ +p99 \S+ +max \S+$`,
			} {
				if !regexp.MustCompile(want).MatchString(out.String()) {
					t.Errorf("the report has no line like %s:\n%s", want, out.String())
				}
			}
		})
	}
}

// TestBadFlags: a wrong broker or store is an error that names it (and no
// password), before any booking is sent.
func TestBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-broker", "nats"}, `unknown broker "nats"`},
		{[]string{"-broker", "kafka", "-db", "mysql://x"}, `unknown -db "mysql://x": use sqlite, memory or a postgres:// URL`},
		{[]string{"-broker", "kafka", "-db", "mysql://root:secret@db/x"}, `unknown -db "mysql://root:xxxxx@db/x"`},
		{[]string{"-broker", "kafka", "-db", "host=db password=secret"}, `unknown -db <hidden: it may hold a password>`},
		{[]string{"-broker", "kafka", "-db", "sqlite3"}, `unknown -db "sqlite3"`},
		{[]string{"-n", "0"}, "-n and -c must be at least 1"},
		// Services that are not running: a hint, not a bare dial error.
		{[]string{"-events-url", "http://" + brokertest.ClosedPort(t), "-bookings-url", "http://" + brokertest.ClosedPort(t)},
			"is EventService running there? start the services, or point -events-url and -bookings-url at them"},
	} {
		var out, stderr bytes.Buffer
		err := run(context.Background(), tc.args, &out, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %v = %v, want an error containing %q", tc.args, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("run %v: the error shows the password: %v", tc.args, err)
		}
		if out.Len() != 0 {
			t.Errorf("run %v printed a report:\n%s", tc.args, out.String())
		}
	}
}

// TestEnvironment: BROKER, AMQP_URL and KAFKA_BROKERS are used for the
// flags not given, a flag wins over them, and -h shows the built-in
// defaults, never the environment's values (AMQP_URL may hold a password).
func TestEnvironment(t *testing.T) {
	t.Setenv("AMQP_URL", "amqp://guest:secret@127.0.0.1:1/")
	t.Setenv("BROKER", "nats")

	var out, stderr bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &out, &stderr); err != nil {
		t.Fatalf("run -h: %v", err)
	}
	if strings.Contains(stderr.String(), "secret") || !strings.Contains(stderr.String(), "env AMQP_URL") {
		t.Errorf("-h shows the environment's password, or does not name AMQP_URL:\n%s", stderr.String())
	}

	err := run(context.Background(), []string{"-n", "1"}, &out, &stderr)
	if err == nil || !strings.Contains(err.Error(), `unknown broker "nats"`) {
		t.Errorf("with BROKER=nats: %v, want the unknown broker", err)
	}
	err = run(context.Background(), []string{"-broker", "amqp", "-n", "1"}, &out, &stderr)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") || strings.Contains(err.Error(), "secret") {
		t.Errorf("with -broker amqp and AMQP_URL on a closed port: %v, want a connection error there, without the password", err)
	}
}
