package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"example.com/myevents/capstone/internal/app"
	"example.com/myevents/capstone/internal/servicetest"
	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/msgqueuetest"
	"example.com/myevents/capstone/msgqueue/rabbitmq"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

func TestMain(m *testing.M) { brokertest.Main(m) }

// wait bounds every wait for the broker or a service.
const wait = 20 * time.Second

// recorder wraps BookingService's broker handler: it records every event
// the service applied, and can hold events back until released.
type recorder struct {
	mu      sync.Mutex
	applied []contracts.Event
	entered chan contracts.Event // if set, gets each event before it is held
	hold    chan struct{}        // if set, each event waits until it is closed
	release sync.Once
}

// holding returns a recorder that holds every event until Release.
// Pass it to start, which releases it before it stops the service (a
// held handler would keep the service from stopping).
func holding() *recorder {
	return &recorder{hold: make(chan struct{}), entered: make(chan contracts.Event, 1000)}
}

// awaitEntered waits for the next event a holding recorder holds.
func (r *recorder) awaitEntered(t *testing.T) contracts.Event {
	t.Helper()
	return brokertest.Receive(t, r.entered, wait, "BookingService did not receive an event")
}

// Release lets held events through.
func (r *recorder) Release() {
	if r.hold != nil {
		r.release.Do(func() { close(r.hold) })
	}
}

func (r *recorder) wrap(next msgqueue.Handler) msgqueue.Handler {
	return func(ctx context.Context, ev contracts.Event) error {
		if r.entered != nil {
			r.entered <- ev
		}
		if r.hold != nil {
			<-r.hold
		}
		err := next(ctx, ev)
		if err == nil {
			r.mu.Lock()
			r.applied = append(r.applied, ev)
			r.mu.Unlock()
		}
		return err
	}
}

// events returns what was applied so far.
func (r *recorder) events() []contracts.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.applied)
}

// count says how often an event of that name and ID was applied.
func (r *recorder) count(name, id string) int {
	n := 0
	for _, ev := range r.events() {
		if ev.EventName() == name && msgqueuetest.EventID(ev) == id {
			n++
		}
	}
	return n
}

// awaitCount waits until every id of that name was applied n times.
func (r *recorder) awaitCount(t *testing.T, name string, n int, ids ...string) {
	t.Helper()
	brokertest.Eventually(t, wait, func() error {
		for _, id := range ids {
			if got := r.count(name, id); got != n {
				return fmt.Errorf("%s %s applied %d times, want %d", name, id, got, n)
			}
		}
		return nil
	})
}

// amqpConfig returns a configuration on the test's RabbitMQ with an
// exchange and a BookingService queue of the test's own, deleted when the
// test ends.
func amqpConfig(t *testing.T) app.Config {
	t.Helper()
	rabbit := brokertest.AMQP(t)
	cfg := app.DefaultConfig(app.BookingService)
	cfg.Broker = app.AMQP
	cfg.AMQPURL = rabbit.URL
	cfg.Exchange = brokertest.Name(t, "events")
	cfg.Queue = brokertest.Name(t, "bookingservice")
	t.Cleanup(func() {
		ch, closeConn, err := openChannel(rabbit.URL)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer closeConn()
		if err := rabbitmq.DeleteTopology(ch, cfg.Exchange, cfg.Queue); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return cfg
}

// kafkaConfig returns a configuration on the test's Kafka with a topic and
// a consumer group of the test's own, deleted when the test ends.
func kafkaConfig(t *testing.T) app.Config {
	t.Helper()
	cluster := brokertest.Kafka(t)
	cfg := app.DefaultConfig(app.BookingService)
	cfg.Broker = app.Kafka
	cfg.KafkaBrokers = cluster.Brokers
	cfg.Topic = brokertest.Name(t, "events")
	cfg.Group = brokertest.Name(t, "bookingservice")
	t.Cleanup(func() {
		admin, err := sarama.NewClusterAdmin(cfg.KafkaBrokers, saramaConfig())
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer admin.Close()
		_ = admin.DeleteConsumerGroup(cfg.Group) // absent when the store was memory
		for _, topic := range []string{cfg.Topic, cfg.Topic + ".dlq"} {
			if err := admin.DeleteTopic(topic); err != nil && !strings.Contains(err.Error(), "does not exist") {
				t.Errorf("cleanup: deleting topic %s: %v", topic, err)
			}
		}
	})
	return cfg
}

// forEachBroker runs f over RabbitMQ and over Kafka, each with names of
// its own.
func forEachBroker(t *testing.T, f func(t *testing.T, cfg app.Config)) {
	t.Run("amqp", func(t *testing.T) {
		t.Parallel()
		f(t, amqpConfig(t))
	})
	t.Run("kafka", func(t *testing.T) {
		t.Parallel()
		f(t, kafkaConfig(t))
	})
}

// sqlite returns the DSN of a new SQLite file in the test's directory.
func sqlite(t *testing.T, name string) string {
	return "sqlite:" + filepath.Join(t.TempDir(), name+".db")
}

// start runs a service of cfg (cfg.Service) on a free port with the
// store db, stopped (and required to stop cleanly) when the test ends,
// after held (if any) was released.
func start(t *testing.T, cfg app.Config, service, db string, opt app.Options, held ...*recorder) (*app.Running, *servicetest.Server) {
	t.Helper()
	cfg.Service = service
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.DB = db
	opt.Logger = testLogger(t)
	r, err := app.Start(context.Background(), cfg, opt)
	if err != nil {
		t.Fatalf("starting %s: %v", service, err)
	}
	t.Cleanup(func() {
		for _, h := range held {
			h.Release()
		}
		if err := r.Stop(); err != nil {
			t.Errorf("%s stopped with an error: %v", service, err)
		}
	})
	return r, servicetest.At(t, r.URL)
}

// testLogger sends the services' logs to the test log, until the test
// ends.
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.done = true
	})
	return slog.New(slog.NewTextHandler(w, nil))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// awaitHealth waits until /healthz answers want.
func awaitHealth(t *testing.T, a *servicetest.Server, want int) {
	t.Helper()
	brokertest.Eventually(t, 2*wait, func() error {
		status, body, err := a.Try("GET", "/healthz", "")
		if err != nil || status != want {
			return fmt.Errorf("healthz = %d %s %v, want %d", status, body, err, want)
		}
		return nil
	})
}

// view is BookingService's answer to GET /events/{id}.
type view struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	LocationID string `json:"location_id"`
	Hall       string `json:"hall"`
	Capacity   int    `json:"capacity"`
	Booked     int    `json:"booked"`
	Available  int    `json:"available"`
	StartDate  int64  `json:"start_date"`
	EndDate    int64  `json:"end_date"`
}

// booking is a booking as BookingService answers it.
type booking struct {
	ID      string `json:"id"`
	EventID string `json:"event_id"`
	UserID  string `json:"user_id"`
	Seats   int    `json:"seats"`
	Date    int64  `json:"date"`
}

// createEvent creates a location with one hall of capacity seats and an
// event there, on EventService, and returns their IDs.
func createEvent(t *testing.T, events *servicetest.Server, name string, capacity int) (locationID, eventID string) {
	t.Helper()
	var loc, ev struct{ ID string }
	events.JSON("POST", "/locations",
		fmt.Sprintf(`{"name":"Arena %s","address":"1 Harbour Road","country":"NL","halls":[{"name":"Main","capacity":%d}]}`, name, capacity),
		http.StatusCreated, &loc)
	events.JSON("POST", "/events",
		fmt.Sprintf(`{"name":%q,"location_id":%q,"hall":"Main","start_date":1795118400,"end_date":1795129200,"duration":180}`, name, loc.ID),
		http.StatusCreated, &ev)
	return loc.ID, ev.ID
}

// awaitEvent waits until BookingService knows the event and returns its
// view.
func awaitEvent(t *testing.T, bookings *servicetest.Server, id string) view {
	t.Helper()
	var v view
	brokertest.Eventually(t, wait, func() error {
		status, resp, err := bookings.Try("GET", "/events/"+id, "")
		if err != nil {
			return err
		}
		if status != http.StatusOK {
			return fmt.Errorf("GET /events/%s = %d %s", id, status, bytes.TrimSpace(resp))
		}
		return json.Unmarshal(resp, &v)
	})
	return v
}

// book books seats and returns the booking.
func book(t *testing.T, bookings *servicetest.Server, eventID, user string, seats int) booking {
	t.Helper()
	var b booking
	bookings.JSON("POST", "/events/"+eventID+"/bookings", fmt.Sprintf(`{"seats":%d,"user_id":%q}`, seats, user), http.StatusCreated, &b)
	return b
}

// bookingIDs lists the IDs of an event's bookings on BookingService.
func bookingIDs(t *testing.T, bookings *servicetest.Server, eventID string) []string {
	t.Helper()
	var bs []booking
	bookings.JSON("GET", "/events/"+eventID+"/bookings", "", http.StatusOK, &bs)
	ids := make([]string, len(bs))
	for i, b := range bs {
		ids[i] = b.ID
	}
	slices.Sort(ids)
	return ids
}
