package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/capstone/msgqueue/rabbitmq"
	"example.com/myevents/labs/brokertest"
	"example.com/myevents/labs/labtest"
)

// updateScreenshot writes the screenshot docs/capstone.md shows.
var updateScreenshot = flag.Bool("update-screenshot", false, "write the live view's screenshot to docs/img/liveview.png")

// TestLiveView opens the live view in a real browser (headless Chromium)
// while the demo runs, presses its controls as an instructor would, and
// checks what the page shows: a concert created, seats booked while
// EventService is down, 20 clients racing for the last seat (exactly one
// wins), BookingService restarted (Kafka: it answers 503 while it replays
// the log; RabbitMQ: the queue holds what came while it was down, then
// drains), and a poison message in the dead-letter topic or queue. It
// saves a screenshot of the page at the end.
func TestLiveView(t *testing.T) {
	browser := findBrowser(t)
	t.Run("kafka", func(t *testing.T) { testLiveView(t, browser, "kafka", nil) })
	t.Run("amqp", func(t *testing.T) {
		r := brokertest.AMQP(t)
		t.Setenv("AMQP_URL", r.URL)
		names := rabbitNames{url: r.URL, exchange: brokertest.Name(t, "myevents"), queue: brokertest.Name(t, "myevents")}
		testLiveView(t, browser, "amqp", &names)
		// At exit the demo deleted its queues and exchange.
		for _, q := range names.queues() {
			if err := names.with(context.Background(), func(c *amqp.Connection) error { return passiveDeclare(c, q) }); err == nil {
				t.Errorf("queue %s still exists after the demo stopped", q)
			}
		}
	})
}

func testLiveView(t *testing.T, browser, broker string, names *rabbitNames) {
	args := append([]string{"-broker", broker}, freePorts...)
	if names != nil {
		args = append(args, "-exchange", names.exchange, "-queue", names.queue)
	}
	r := start(t, args)
	out, stderr := &r.out, &r.stderr
	defer func() {
		if t.Failed() {
			t.Logf("output:\n%s\nstderr:\n%s", out.String(), stderr.String())
		}
	}()

	// Wait until it serves, and read the live view's address.
	r.await(t, "Serving until Ctrl-C")
	url := find(t, out.String(), `Live view +(http://\S+) `)

	p := openPage(t, browser, url)
	p.waitText("#status", "live")
	p.waitText("#svc-bookingservice .badge", "serving · 200")
	p.waitText("#svc-eventservice .badge", "up · 200")
	if broker == "kafka" {
		// The story's four records, with where they landed.
		p.waitText("#flow", "location.created")
		p.waitText("#flow", "event.booked")
		p.waitMatch("#flow", `events · partition \d · offset 2`)
		p.waitText("#broker", "topic events.dlq")
	} else {
		p.waitText("#broker", "queue "+names.queue)
		p.waitText("#broker", "dead-letter queue "+names.queue+".dlq")
	}

	// Create a concert of 5 seats: location.created and event.created
	// reach BookingService through the broker.
	p.do(chromedp.SetValue(chromedp.CSS("#create-name"), "Tosca"), chromedp.SetValue(chromedp.CSS("#create-seats"), "5"))
	p.click("#create")
	p.waitText("#activity", `created "Tosca" with 5 seats`)
	row := p.rowOf("Tosca")
	p.waitText(row+" .available", "5")
	p.waitText("#flow", "Tosca in hall Main, 5 seats")

	// Stop EventService: bookings go on.
	p.click(`[data-control="stop-eventservice"]`)
	p.waitText("#svc-eventservice .badge", "down")
	p.click(row + " .book")
	p.waitMatch("#activity", `\w+ books 1 seat\(s\) of "Tosca": 201`)
	p.waitText(row+" .booked", "1")

	// The last seat, 20 clients at once: exactly one 201.
	p.click(row + " .race")
	p.waitText("#activity", `last seat of "Tosca", 20 clients at once: 1 × 201, 19 × 409; now booked 5 of 5`)
	p.waitText(row+" .available", "0")
	p.click(`[data-control="start-eventservice"]`)
	p.waitText("#svc-eventservice .badge", "up · 200")

	// Restart BookingService.
	p.click("#restart")
	if broker == "kafka" {
		// An empty store: 503 while it replays the log (slow motion
		// keeps it visible), then serving with the same seats.
		p.waitText("#svc-bookingservice .badge", "answering 503")
		p.waitText("#run", "replaying, not caught up yet")
		p.waitText("#activity", "restarted BookingService with an empty store: it answered 503 while it replayed the log, then caught up")
		p.waitMatch("#run", `replayed \d+ event\(s\) of \d+ record\(s\) in the log\s+caught up after`)
		p.waitText("#svc-bookingservice .history", "answering 503")
	} else {
		// Down: the events of a concert created meanwhile wait in the
		// queue; after the start it drains.
		p.waitText("#svc-bookingservice .badge", "down")
		p.waitMatch("#broker", `queue `+regexp.QuoteMeta(names.queue)+`\s*ready 2\s*consumers 0`)
		p.waitText("#activity", "2 messages waited in the queue")
		p.waitMatch("#broker", `queue `+regexp.QuoteMeta(names.queue)+`\s*ready 0\s*consumers 1`)
		p.waitText(p.rowOf("Created while BookingService was down")+" .available", "10")
	}
	p.waitText("#svc-bookingservice .badge", "serving · 200")
	p.waitText(row+" .booked", "5")

	// A poison message ends in the dead letters, with its reason.
	p.click("#poison")
	p.waitText("#activity", "dead-lettered it at once: invalid-payload")
	p.waitText("#flow", "dead-lettered copy: invalid-payload")
	p.waitText("#flow", "never: dead-lettered (invalid-payload)")
	if broker == "kafka" {
		p.waitMatch("#broker", `(?s)topic events\.dlq.*p0 1`)
	} else {
		p.waitMatch("#broker", `dead-letter queue `+regexp.QuoteMeta(names.queue)+`.dlq\s*ready 1`)
	}
	p.screenshot(broker)

	// Ctrl-C: the demo stops cleanly, the page notices.
	if err := r.interrupt(t, 60*time.Second); err != nil {
		t.Fatalf("run after Ctrl-C: %v", err)
	}
	p.waitText("#status", "disconnected")
	if strings.Contains(stderr.String(), "level=ERROR") {
		t.Errorf("errors were logged:\n%s", stderr.String())
	}
}

// findBrowser returns Chromium's path. Without one the test skips, saying
// how to install it; when CI is set, it fails: CI must run it.
func findBrowser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	msg := "no Chromium to run the live view's browser test: install it (Debian, Ubuntu: apt-get install -y chromium)"
	if brokertest.InCI() {
		t.Fatal(msg + "; CI is set, so a missing browser is a failure")
	}
	t.Skip(msg)
	return ""
}

// page is the live view open in a headless browser.
type page struct {
	t   *testing.T
	ctx context.Context
	log *labtest.Buffer // the browser's own output
}

// openPage starts a headless Chromium with a fresh profile and opens url.
// The flags keep it from calling home: this machine's network is closed,
// and a test must not depend on it.
func openPage(t *testing.T, browser, url string) *page {
	t.Helper()
	log := &labtest.Buffer{}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(browser),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1250),
		chromedp.CombinedOutput(log),
	)
	ctx, cancelTab := chromedp.NewContext(alloc)
	ctx, cancelTime := context.WithTimeout(ctx, 4*time.Minute)
	t.Cleanup(func() {
		cancelTime()
		cancelTab()
		cancelAlloc()
		if t.Failed() {
			t.Logf("browser output:\n%s", log.String())
		}
	})
	p := &page{t: t, ctx: ctx, log: log}
	p.do(chromedp.Navigate(url))
	return p
}

func (p *page) do(steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, steps...); err != nil {
		p.t.Fatalf("browser: %v", err)
	}
}

// text is the rendered text of the first element sel matches ("" if none).
func (p *page) text(sel string) (string, error) {
	q := strconv.Quote(sel)
	return chromedp.Run(p.ctx, chromedp.Evaluate[string](`(document.querySelector(`+q+`) || {innerText: ""}).innerText`))
}

// waitText polls until the text of sel contains want.
func (p *page) waitText(sel, want string) {
	p.t.Helper()
	p.wait(sel, fmt.Sprintf("%q", want), func(s string) bool { return strings.Contains(s, want) })
}

// waitMatch polls until the text of sel matches the regular expression.
func (p *page) waitMatch(sel, pattern string) {
	p.t.Helper()
	re := regexp.MustCompile(pattern)
	p.wait(sel, "/"+pattern+"/", re.MatchString)
}

func (p *page) wait(sel, what string, ok func(string) bool) {
	p.t.Helper()
	brokertest.Eventually(p.t, 60*time.Second, func() error {
		s, err := p.text(sel)
		if err != nil {
			p.t.Fatalf("browser: reading %s: %v", sel, err)
		}
		if ok(s) {
			return nil
		}
		return fmt.Errorf("the page's %s does not show %s; it shows:\n%s", sel, what, s)
	})
}

// click waits until no control runs, then clicks sel.
func (p *page) click(sel string) {
	p.t.Helper()
	p.wait("#busy", "no control running", func(string) bool {
		hidden, err := chromedp.Run(p.ctx, chromedp.Evaluate[bool](`document.querySelector("#busy").hidden`))
		return err == nil && hidden
	})
	p.do(chromedp.Click(chromedp.CSS(sel)))
}

// rowOf returns a selector for the seats row of the concert named name.
func (p *page) rowOf(name string) string {
	p.t.Helper()
	p.waitText("#seats", name)
	id, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("#seats tbody tr")]
		.find((tr) => tr.querySelector(".name").innerText.startsWith(`+strconv.Quote(name)+`)).dataset.id`))
	if err != nil {
		p.t.Fatalf("browser: finding the row of %s: %v", name, err)
	}
	return fmt.Sprintf(`#seats tr[data-id=%q]`, id)
}

// screenshot saves the page as a PNG in the test's directory (kept with
// MYEVENTS_SCREENSHOTS=DIR), and with -update-screenshot the Kafka one as
// the one docs/capstone.md shows.
func (p *page) screenshot(broker string) {
	p.t.Helper()
	shot, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("browser: screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		p.t.Fatalf("the screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 1000 || b.Dy() < 700 {
		p.t.Fatalf("the screenshot is %dx%d, smaller than the window", b.Dx(), b.Dy())
	}
	dir := os.Getenv("MYEVENTS_SCREENSHOTS")
	if dir == "" {
		dir = p.t.TempDir()
	}
	path := filepath.Join(dir, "liveview-"+broker+".png")
	if *updateScreenshot && broker == "kafka" {
		path = filepath.Join("..", "..", "..", "docs", "img", "liveview.png")
	}
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot: %s", path)
}

// passiveDeclare fails if queue q does not exist.
func passiveDeclare(conn *amqp.Connection, q string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	_, err = rabbitmq.InspectQueue(ch, q)
	return err
}
