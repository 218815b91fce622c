package e2e_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/capstone/internal/app"
	"example.com/myevents/labs/brokertest"
)

// TestSlowClientsAreCutOff: a client that sends its headers or its body
// too slowly, or keeps an idle connection, is disconnected instead of
// holding a connection open for ever.
func TestSlowClientsAreCutOff(t *testing.T) {
	t.Parallel()
	cfg := kafkaConfig(t)
	short := app.HTTPTimeouts{ReadHeader: 300 * time.Millisecond, Read: 300 * time.Millisecond, Idle: 300 * time.Millisecond}
	running, _ := start(t, cfg, app.EventService, "memory:", app.Options{HTTPTimeouts: short})
	for _, tc := range []struct{ name, send string }{
		{"slow body", "POST /locations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"na"},
		{"slow headers", "POST /locations HTTP/1.1\r\nHost: x\r\nContent-Ty"},
		{"idle after a request", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", running.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, tc.send); err != nil {
				t.Fatal(err)
			}
			// Read whatever the server answers until it closes; the
			// test's own deadline is far beyond the server's timeouts.
			if err := conn.SetReadDeadline(time.Now().Add(wait)); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(conn)
			var netErr net.Error
			if errors.As(err, &netErr) && netErr.Timeout() {
				t.Fatalf("the connection was still open after %v; read %q", wait, got)
			}
			status := ""
			if resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(got))), nil); err == nil {
				status = resp.Status
				resp.Body.Close()
			}
			t.Logf("closed by the server after answering %q", status)
			if tc.name == "slow body" && status != "408 Request Timeout" {
				t.Errorf("a body that did not arrive in time got %q, want 408", status)
			}
		})
	}
}

// produceRaw writes one record to cfg's topic with a producer of the
// test's own that takes records up to 2 MB, keyed like the emitter's.
func produceRaw(t *testing.T, cfg app.Config, topic, key string, value []byte) {
	t.Helper()
	sc := saramaConfig()
	sc.Producer.Return.Successes = true
	sc.Producer.MaxMessageBytes = 2 << 20
	sc.Producer.Partitioner = sarama.NewMurmur2Partitioner
	p, err := sarama.NewSyncProducer(cfg.KafkaBrokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(key), Value: sarama.ByteEncoder(value)}); err != nil {
		t.Fatalf("producing a %d-byte record: %v", len(value), err)
	}
}

// healthz returns BookingService's /healthz status and body.
func healthz(a *api) (int, string, error) {
	status, body, err := a.try("GET", "/healthz", "")
	return status, string(body), err
}

// TestHealthzReportsAStuckKafkaListener: a record BookingService can
// neither handle nor dead-letter (its dead-letter topic is gone) keeps its
// partition from moving; /healthz answers 503 and says where and why.
// Once the dead-letter topic is back, the partition moves on and /healthz
// is 200 again, with no restart. The consumer group (SQLite) and the
// replaying listener (memory) alike.
func TestHealthzReportsAStuckKafkaListener(t *testing.T) {
	for _, store := range []string{"sqlite", "memory"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			cfg := kafkaConfig(t)
			db := "memory:"
			if store == "sqlite" {
				db = sqlite(t, "bookings")
			}
			_, bookings := start(t, cfg, app.BookingService, db, app.Options{})
			brokertest.Eventually(t, wait, func() error {
				if status, body, err := healthz(bookings); err != nil || status != http.StatusOK {
					return fmt.Errorf("healthz = %d %s %v, want 200 (caught up)", status, body, err)
				}
				return nil
			})

			admin, err := sarama.NewClusterAdmin(cfg.KafkaBrokers, saramaConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close()
			dlq := cfg.Topic + ".dlq"
			if err := admin.DeleteTopic(dlq); err != nil {
				t.Fatal(err)
			}
			produceRaw(t, cfg, cfg.Topic, "ev-1", []byte("not an envelope"))
			brokertest.Eventually(t, 2*wait, func() error {
				status, body, err := healthz(bookings)
				if err != nil || status != http.StatusServiceUnavailable || !strings.Contains(body, "cannot move past offset 0") {
					return fmt.Errorf("healthz = %d %s %v, want 503 naming the stuck partition", status, body, err)
				}
				return nil
			})
			_, body, _ := healthz(bookings)
			t.Logf("while stuck: %s", strings.TrimSpace(body))

			if err := admin.CreateTopic(dlq, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); err != nil {
				t.Fatal(err)
			}
			brokertest.Eventually(t, 2*wait, func() error {
				if status, body, err := healthz(bookings); err != nil || status != http.StatusOK {
					return fmt.Errorf("healthz = %d %s %v, want 200 once the record is dead-lettered", status, body, err)
				}
				return nil
			})
		})
	}
}

// TestReplayPastANearLimitRecord: a bad record of 1,048,400 bytes, which
// the broker takes but whose dead-letter copy used to be too large to
// write, no longer keeps a replaying BookingService at 503 for ever: the
// copy is cut, the replay catches up and the event behind the record is
// known.
func TestReplayPastANearLimitRecord(t *testing.T) {
	t.Parallel()
	cfg := kafkaConfig(t)
	_, events := start(t, cfg, app.EventService, "memory:", app.Options{})
	// The topic exists once EventService runs; the bad record goes on the
	// partition of the event that follows it.
	locID, evID := createEvent(t, events, "Before", 5)
	prefix := `{"eventName":"event.created","payload":{"id":"x","name":"`
	bad := []byte(prefix + strings.Repeat("x", 1_048_400-len(prefix)-3) + `"}}`)
	produceRaw(t, cfg, cfg.Topic, evID, bad)
	var after struct{ ID string }
	events.json("POST", "/events", fmt.Sprintf(`{"name":"After","location_id":%q,"hall":"Main","start_date":1795118400,"end_date":1795129200}`, locID), http.StatusCreated, &after)

	_, bookings := start(t, cfg, app.BookingService, "memory:", app.Options{})
	awaitEvent(t, bookings, evID)
	awaitEvent(t, bookings, after.ID)
	bookings.json("GET", "/healthz", "", http.StatusOK, nil)
	book(t, bookings, evID, "alice", 5)
}
