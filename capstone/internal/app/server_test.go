package app

import (
	"log/slog"
	"net/http"
	"testing"
	"time"
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
}
