package contracts

import (
	"testing"
	"time"
)

// BenchmarkUnwrap decodes one event.booked as Wrap writes it, b.N times
// each way in one run: by the general path (the envelope decoded, then
// its payload: unwrap) and by Unwrap (the payload alone, in one pass).
// It reports each way's ns per record and Unwrap's as a fraction of the
// general path's (unwrap-x-general).
//
//	go test -run '^$' -bench BenchmarkUnwrap ./contracts
func BenchmarkUnwrap(b *testing.B) {
	value, err := Wrap(&EventBooked{ID: "elsewhere-000001", EventID: "show", UserID: "u", Seats: 1,
		Date: time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)})
	if err != nil {
		b.Fatal(err)
	}
	timeOf := func(f func([]byte) (string, Event, error)) float64 {
		start := time.Now()
		for range b.N {
			if _, _, err := f(value); err != nil {
				b.Fatal(err)
			}
		}
		return float64(time.Since(start).Nanoseconds()) / float64(b.N)
	}
	general := timeOf(unwrap)
	onePass := timeOf(Unwrap)
	b.ReportMetric(general, "general-ns/record")
	b.ReportMetric(onePass, "unwrap-ns/record")
	b.ReportMetric(onePass/general, "unwrap-x-general")
}
