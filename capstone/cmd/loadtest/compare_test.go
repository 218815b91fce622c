package main

import (
	"bytes"
	"context"
	"regexp"
	"testing"

	"example.com/myevents/labs/brokertest"
)

// TestCompare runs -compare briefly: the baseline loops, the one-at-a-time
// and the group path in one run, each checked (every seat sold once), and
// one line of ratios.
func TestCompare(t *testing.T) {
	var out, stderr bytes.Buffer
	args := []string{"-broker", "amqp", "-url", brokertest.AMQP(t).URL, "-n", "40", "-c", "4", "-warmup", "5", "-compare"}
	if err := run(context.Background(), args, &out, &stderr); err != nil {
		t.Fatalf("run %v: %v\nstderr:\n%s", args, err, stderr.String())
	}
	for _, want := range []string{
		`(?m)^throughput: +\d+ bookings/s \(40 x 201 in `,
		`(?m)^baseline: +a loop of one SQLite transaction per booking \(journal_mode=wal, synchronous=2, one connection\): \d+ bookings/s before, \d+ after \(mean \d+\)$`,
		`(?m)^batched: +the same loop, 16 bookings per transaction .*: \d+ bookings/s$`,
		`(?m)^old path: +-group 1, a transaction per booking: \d+ bookings/s, p50 \S+ +p90 \S+ +p99 \S+ +max \S+$`,
		`(?m)^new path: +-group 64, group commit: \d+ bookings/s, p50 `,
		`(?m)^ratios: +new/old \d+\.\d\d, new/baseline \d+\.\d\d, old/baseline \d+\.\d\d$`,
	} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("the report has no line like %s:\n%s", want, out.String())
		}
	}
}
