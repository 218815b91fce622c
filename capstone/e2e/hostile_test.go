package e2e_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"example.com/myevents/capstone/internal/app"
	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"

	_ "modernc.org/sqlite" // lockSQLite's driver
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

// healthz returns BookingService's /healthz status and body.
func healthz(a *servicetest.Server) (int, string, error) {
	status, body, err := a.Try("GET", "/healthz", "")
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
			awaitHealth(t, bookings, http.StatusOK) // caught up

			recreateDLQ := dropTopic(t, cfg, cfg.Topic+".dlq")
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

			recreateDLQ()
			awaitHealth(t, bookings, http.StatusOK) // the record is dead-lettered
		})
	}
}

// TestHealthzBlamesTheStoreNotTheBroker: while another process holds
// BookingService's SQLite file locked, an event from the broker cannot be
// applied and the listener holds it; /healthz answers 503 and says that
// the events cannot be applied, not that the broker, which is fine, is
// down. Once the lock goes, the event is applied and /healthz is 200.
func TestHealthzBlamesTheStoreNotTheBroker(t *testing.T) {
	forEachBroker(t, func(t *testing.T, cfg app.Config) {
		db := sqlite(t, "bookings")
		_, bookings := start(t, cfg, app.BookingService, db, app.Options{})
		awaitHealth(t, bookings, http.StatusOK)

		unlock := lockSQLite(t, strings.TrimPrefix(db, "sqlite:"))
		sendRaw(t, cfg, rawEvent{key: "ev-locked", name: contracts.EventCreatedName,
			body: `{"id":"ev-locked","name":"Locked","location_id":"loc-1","hall":"Main","capacity":10}`})
		brokertest.Eventually(t, 2*wait, func() error {
			status, body, err := healthz(bookings)
			if err != nil || status != http.StatusServiceUnavailable || !strings.Contains(body, "cannot apply events") {
				return fmt.Errorf("healthz = %d %s %v, want 503 saying the events cannot be applied", status, body, err)
			}
			return nil
		})
		_, body, _ := healthz(bookings)
		t.Logf("while the store is locked: %s", strings.TrimSpace(body))
		if strings.Contains(body, "broker is down") {
			t.Errorf("healthz blames the broker for a locked store: %s", strings.TrimSpace(body))
		}
		unlock()
		awaitHealth(t, bookings, http.StatusOK)
		awaitEvent(t, bookings, "ev-locked")
	})
}

// lockSQLite holds an exclusive lock on the SQLite file at path, as
// another process writing to it would, until the returned func (or the
// test's end) lets it go.
func lockSQLite(t *testing.T, path string) (unlock func()) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatalf("opening %s: %v", path, err)
	}
	conn, err := db.Conn(t.Context())
	if err == nil {
		_, err = conn.ExecContext(t.Context(), "PRAGMA busy_timeout = 10000")
	}
	if err == nil {
		_, err = conn.ExecContext(t.Context(), "BEGIN EXCLUSIVE")
	}
	if err != nil {
		t.Fatalf("locking %s: %v", path, err)
	}
	var once sync.Once
	unlock = func() {
		once.Do(func() {
			if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
				t.Errorf("unlocking %s: %v", path, err)
			}
			_ = conn.Close()
			_ = db.Close()
		})
	}
	t.Cleanup(unlock)
	return unlock
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
	events.JSON("POST", "/events", fmt.Sprintf(`{"name":"After","location_id":%q,"hall":"Main","start_date":1795118400,"end_date":1795129200}`, locID), http.StatusCreated, &after)

	_, bookings := start(t, cfg, app.BookingService, "memory:", app.Options{})
	awaitEvent(t, bookings, evID)
	awaitEvent(t, bookings, after.ID)
	bookings.JSON("GET", "/healthz", "", http.StatusOK, nil)
	book(t, bookings, evID, "alice", 5)
}

// TestHostileEventsFromTheBroker sends BookingService, with a raw client,
// the events that used to oversell, corrupt or stall it: seat counts that
// wrap an int64 or pass a 32-bit column, a NUL in an ID, invalid UTF-8, an
// event.created far over 64 KiB, and (AMQP) a routing key that says one
// event while the header says another. Each is dead-lettered at once with
// its reason, never retried; the valid events around them are applied,
// the event stays readable and sells exactly its capacity, and the service
// stays healthy. Every broker, every store it runs on.
func TestHostileEventsFromTheBroker(t *testing.T) {
	for _, tc := range []struct{ broker, store string }{
		{app.AMQP, "sqlite"}, {app.AMQP, "postgres"}, {app.Kafka, "sqlite"}, {app.Kafka, "postgres"}, {app.Kafka, "memory"},
	} {
		t.Run(tc.broker+"-"+tc.store, func(t *testing.T) {
			t.Parallel()
			cfg := kafkaConfig(t)
			huge := 200 << 10 // kfake takes records up to 1 MB
			if tc.broker == app.AMQP {
				cfg, huge = amqpConfig(t), 5<<20
			}
			db := map[string]string{"sqlite": sqlite(t, "bookings"), "postgres": servicetest.PostgresDSN(t), "memory": "memory:"}[tc.store]
			_, bookings := start(t, cfg, app.BookingService, db, app.Options{})
			booked := func(id, seats, user string) rawEvent {
				return rawEvent{key: "ev-h", name: contracts.EventBookedName,
					body: `{"id":"` + id + `","event_id":"ev-h","user_id":"` + user + `","seats":` + seats + `,"date":"2026-11-27T20:00:00Z"}`}
			}
			evs := []rawEvent{
				{key: "loc-h", name: contracts.LocationCreatedName, body: `{"id":"loc-h","name":"Hall","halls":[{"name":"Main","capacity":10}]}`},
				{key: "ev-h", name: contracts.EventCreatedName, body: `{"id":"ev-h","name":"Gig","location_id":"loc-h","hall":"Main","capacity":10}`},
				booked("b-wrap", "9223372036854775807", "mallory"),
				booked("b-one", "1", "alice"),
				booked("b-32bit", "3000000000", "mallory"),
				{key: "ev-h", name: contracts.EventBookedName, body: `{"id":"b-nul","event_id":"ev-h\u0000","user_id":"mallory","seats":1}`},
				booked("b-utf8", "1", "mal\xfflory"),
				{key: "ev-big", name: contracts.EventCreatedName, body: `{"id":"ev-big","location_id":"loc-h","hall":"Main","capacity":10,"name":"` + strings.Repeat("x", huge) + `"}`},
			}
			want := map[string]int{msgqueue.ReasonInvalidPayload: 4, msgqueue.ReasonTooLarge: 1}
			if tc.broker == app.AMQP {
				evs = append(evs, rawEvent{key: "loc-x", name: contracts.EventCreatedName, header: contracts.LocationCreatedName,
					body: `{"id":"loc-x","name":"Not an event","halls":[]}`})
				want[msgqueue.ReasonRoutingKey] = 1
			}
			evs = append(evs, booked("b-last", "2", "bob"))
			sent := time.Now()
			sendRaw(t, cfg, evs...)

			brokertest.Eventually(t, wait, func() error {
				status, body, err := bookings.Try("GET", "/events/ev-h", "")
				if err != nil || status != http.StatusOK || !strings.Contains(string(body), `"booked":3,`) {
					return fmt.Errorf("GET /events/ev-h = %d %s %v, want 3 booked (alice's 1 and bob's 2)", status, body, err)
				}
				if got := deadLetterReasons(t, cfg); fmt.Sprint(got) != fmt.Sprint(want) {
					return fmt.Errorf("dead letters by reason %v, want %v", got, want)
				}
				return nil
			})
			t.Logf("every hostile event dead-lettered and the good ones applied %v after sending", time.Since(sent).Round(10*time.Millisecond))
			bookings.WantError("GET", "/events/ev-big", "", http.StatusNotFound, "not found")
			bookings.JSON("GET", "/healthz", "", http.StatusOK, nil)
			book(t, bookings, "ev-h", "carol", 7)
			bookings.WantError("POST", "/events/ev-h/bookings", `{"seats":1,"user_id":"dave"}`, http.StatusConflict, "not enough seats")
		})
	}
}
