package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"example.com/myevents/capstone/internal/service"
)

// TestServerTimeouts: the HTTP server of every service bounds how long it
// waits for a client's headers, body and next request, and for its own
// answer; an override changes only the fields it sets.
func TestServerTimeouts(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	srv := newServer(http.NotFoundHandler(), HTTPTimeouts{}, log)
	for name, d := range map[string]time.Duration{
		"ReadHeaderTimeout": srv.ReadHeaderTimeout, "ReadTimeout": srv.ReadTimeout,
		"WriteTimeout": srv.WriteTimeout, "IdleTimeout": srv.IdleTimeout,
	} {
		if d <= 0 {
			t.Errorf("%s = %v, want a timeout", name, d)
		}
	}
	srv = newServer(http.NotFoundHandler(), HTTPTimeouts{Read: time.Second}, log)
	if srv.ReadTimeout != time.Second || srv.WriteTimeout != DefaultHTTPTimeouts.Write {
		t.Errorf("with Read overridden: read %v, write %v", srv.ReadTimeout, srv.WriteTimeout)
	}
	// A handler's deadline must leave time to write its answer: a request
	// cut by the write timeout gets no answer at all (curl: "Empty reply
	// from server"), even for a booking that was sold.
	if service.RequestDeadline > DefaultHTTPTimeouts.Write/2 {
		t.Errorf("service.RequestDeadline %v leaves less than half of the write timeout %v to answer", service.RequestDeadline, DefaultHTTPTimeouts.Write)
	}
}

// TestBindSaysWhatIsWrong: a taken port asks whether another program uses
// it; an address that is not host:port says how to write one (it asked
// about another program too).
func TestBindSaysWhatIsWrong(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tc := range []struct{ addr, want, not string }{
		{taken.Addr().String(), "is another program using the port? choose another with -events-listen", "write it as"},
		{"nonsense", "write it as host:port", "another program"},
	} {
		ln, err := bind(tc.addr, "-events-listen")
		if err == nil {
			ln.Close()
			t.Errorf("bind(%q) succeeded", tc.addr)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), tc.not) {
			t.Errorf("bind(%q) = %v, want %q and not %q", tc.addr, err, tc.want, tc.not)
		}
	}
}

// TestShutdownCutsASlowClientCleanly: a client still sending its body
// when the service is asked to stop holds the shutdown past its grace
// period (the read timeout, 15 s, equals ShutdownTimeout); the service
// then closes the connection and stops cleanly. It returned "shutting
// the HTTP server down: context deadline exceeded", and the binary
// exited 1 on an ordinary SIGTERM.
func TestShutdownCutsASlowClientCleanly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reading := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(reading)
		_, _ = io.ReadAll(r.Body) // the rest of the body never comes
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() {
		served <- serve(ctx, ln, h, nil, Config{HTTPAddr: ln.Addr().String()}, slog.New(slog.DiscardHandler),
			Options{ShutdownGrace: 200 * time.Millisecond})
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
	<-reading
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("serve = %v after a shutdown with a slow client, want a clean stop", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve has not returned 30 s after the shutdown began")
	}
}
