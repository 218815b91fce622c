package e2e_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"example.com/myevents/capstone/internal/app"
	"example.com/myevents/labs/brokertest"
)

// TestLateAcknowledgementNeverOversells: with the memory store, the Kafka
// log is the only durable record, so a booking is answered 201 only once
// the broker confirmed its event.booked. Here the broker holds the produce
// request of the first booking past the service's emit timeout (5 s), and
// writes it afterwards. That booking's client gets a 503 that says the
// outcome is not known yet; its seat stays held, so the next client gets
// 409; and once the record is in the log, the event has exactly one
// booking. (It was a 503 "nothing was booked", the seat given back and
// sold again with a 201, and then both applied from the log: capacity 1,
// booked 2.) The test runs a Kafka of its own, whose requests it holds.
func TestLateAcknowledgementNeverOversells(t *testing.T) {
	t.Parallel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	cfg := app.DefaultConfig(app.BookingService)
	cfg.Broker, cfg.KafkaBrokers = app.Kafka, cluster.ListenAddrs()
	_, bookings := start(t, cfg, app.BookingService, "memory:", app.Options{})
	_, events := start(t, cfg, app.EventService, "memory:", app.Options{})
	_, evID := createEvent(t, events, "Late", 1)
	awaitEvent(t, bookings, evID)

	// Hold the next produce request to the events topic for 7 s, past the
	// 5 s the service waits for a confirm; then let the broker write it.
	const hold = 7 * time.Second
	var armed, released atomic.Bool
	armed.Store(true)
	cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		pr := req.(*kmsg.ProduceRequest)
		if len(pr.Topics) == 0 || pr.Topics[0].Topic != cfg.Topic || !armed.CompareAndSwap(true, false) {
			return nil, nil, false
		}
		cluster.DropControl()
		cluster.SleepControl(func() { time.Sleep(hold) })
		released.Store(true)
		return nil, nil, false // now handle it as usual: the record is written
	})

	path := "/events/" + evID + "/bookings"
	status, body, err := bookings.Try("POST", path, `{"seats":1,"user_id":"alice"}`)
	if err != nil || status != http.StatusServiceUnavailable || !strings.Contains(string(body), "may still record it") {
		t.Errorf("alice's booking, held by the broker: %d %s %v, want 503 saying it may still be recorded", status, body, err)
	}
	bookings.WantError("POST", path, `{"seats":1,"user_id":"bob"}`, http.StatusConflict, "not enough seats")

	// Once the broker wrote alice's record, the service hears it back:
	// one booking, alice's, and bob's seat was never sold.
	brokertest.Eventually(t, 2*hold, func() error {
		if !released.Load() {
			return fmt.Errorf("the broker still holds alice's record")
		}
		return nil
	})
	var list []struct {
		UserID string `json:"user_id"`
	}
	brokertest.Eventually(t, wait, func() error {
		v := awaitEvent(t, bookings, evID)
		bookings.JSON("GET", path, "", http.StatusOK, &list)
		if v.Booked != 1 || len(list) != 1 || list[0].UserID != "alice" {
			return fmt.Errorf("booked %d of capacity %d, bookings %v; want alice's alone", v.Booked, v.Capacity, list)
		}
		return nil
	})
	// It stays so: a second chance for bob is still a 409.
	bookings.WantError("POST", path, `{"seats":1,"user_id":"bob"}`, http.StatusConflict, "not enough seats")
}
