package rabbitmq_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"example.com/myevents/capstone/msgqueue"
	"example.com/myevents/capstone/msgqueue/rabbitmq"
	"example.com/myevents/contracts"
	"example.com/myevents/labs/brokertest"
)

// proxy forwards TCP connections to the broker until cut, which drops every
// connection without a word (as a crashed or restarting broker does) and
// refuses new ones until restore. The shared broker itself is never touched.
type proxy struct {
	ln      net.Listener
	target  string
	refused atomic.Int64 // connections refused while cut

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// newProxy starts a proxy to the broker of brokerURL and returns it with the
// URL that goes through it.
func newProxy(t *testing.T, brokerURL string) (*proxy, string) {
	t.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("starting the proxy: %v", err)
	}
	p := &proxy{ln: ln, target: u.Host, conns: map[net.Conn]bool{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
		p.wg.Wait()
	})
	u.Host = ln.Addr().String()
	return p, u.String()
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			p.refused.Add(1)
			_ = c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
		}
		p.wg.Go(func() { pipe(up, c) })
		p.wg.Go(func() { pipe(c, up) })
	}
}

// cut drops every connection and refuses new ones.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

// restore accepts connections again.
func (p *proxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// TestBrokerUnreachableForAWhile: while the broker cannot be reached, Emit
// waits (it neither fails nor reports a success), the emitter and listener
// keep retrying with backoff, and once it is back the event is confirmed
// and consumed without anyone restarting anything. Close then ends an Emit
// that is still waiting for a connection.
func TestBrokerUnreachableForAWhile(t *testing.T) {
	t.Parallel()
	e := newEnv(t, rabbitmq.WithReconnectBackoff(20*time.Millisecond, 200*time.Millisecond))
	p, viaProxy := newProxy(t, e.rabbit.URL)
	e.rabbit = &brokertest.RabbitMQ{URL: viaProxy}
	l := e.mustListener(t, []string{contracts.EventBookedName})
	em := e.mustEmitter(t)

	got := make(chan string, 10)
	listenInBackground(t, l, func(_ context.Context, ev contracts.Event) error {
		got <- ev.(*contracts.EventBooked).ID
		return nil
	})
	// waitFor waits for id; an earlier event may come again first (its ack
	// may have been lost in the cut: at-least-once).
	seen := map[string]bool{}
	waitFor := func(id string) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case g := <-got:
				if g == id {
					seen[g] = true
					return
				}
				if !seen[g] {
					t.Fatalf("received %s, want %s", g, id)
				}
				t.Logf("%s delivered again", g)
			case <-timeout:
				t.Fatalf("%s was not received", id)
			}
		}
	}
	if err := em.Emit(t.Context(), booking("before")); err != nil {
		t.Fatal(err)
	}
	waitFor("before")

	// Take the broker away and emit: Emit must wait, not fail.
	p.cut()
	emitted := make(chan error, 1)
	go func() { emitted <- em.Emit(t.Context(), booking("during")) }()
	brokertest.Eventually(t, 30*time.Second, func() error {
		if n := p.refused.Load(); n < 4 {
			return fmt.Errorf("%d reconnection attempts refused so far", n)
		}
		if em.Connected() || l.Connected() {
			return errors.New("the clients still report a connection")
		}
		return nil
	})
	select {
	case err := <-emitted:
		t.Fatalf("Emit returned %v while the broker was unreachable", err)
	default:
	}

	// Bring it back: the emit completes and the listener resumes.
	p.restore()
	select {
	case err := <-emitted:
		if err != nil {
			t.Fatalf("Emit after the outage: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Emit did not complete after the broker came back")
	}
	waitFor("during")
	t.Logf("outage: %d connection attempts refused; emitter %+v; listener %+v", p.refused.Load(), em.Stats(), l.Stats())

	// An Emit waiting for a connection ends with ErrClosed when the emitter
	// is closed, and one whose context ends returns the context's error.
	p.cut()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := em.Emit(ctx, booking("timeout")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Emit with an expiring context during the outage returned %v", err)
	}
	// Count from here: the first outage and the expiring Emit above have
	// been refused already, and Close must come while this Emit waits.
	refusedBefore := p.refused.Load()
	go func() { emitted <- em.Emit(t.Context(), booking("closed")) }()
	brokertest.Eventually(t, 10*time.Second, func() error {
		if n := p.refused.Load() - refusedBefore; n < 4 {
			return fmt.Errorf("%d reconnection attempts refused since the waiting Emit started", n)
		}
		return nil
	})
	select {
	case err := <-emitted:
		t.Fatalf("Emit returned %v while the broker was unreachable, before Close", err)
	default:
	}
	if err := em.Close(); err != nil {
		t.Errorf("Close during the outage: %v", err)
	}
	select {
	case err := <-emitted:
		if !errors.Is(err, msgqueue.ErrClosed) {
			t.Errorf("waiting Emit returned %v after Close, want msgqueue.ErrClosed", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not end the waiting Emit")
	}
}
