package live

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// page is the web page: HTML, script and style, with nothing to build and
// nothing fetched from elsewhere.
//
//go:embed page
var page embed.FS

// controlTimeout bounds one control (a restart in slow motion takes a few
// seconds; a replay of a long log, longer).
const controlTimeout = 2 * time.Minute

// Handler serves the page, its state and its controls:
//
//	GET  /             the page
//	GET  /api/state    the state, as JSON
//	GET  /api/stream   the state as server-sent events, one per change
//	POST /api/{control} a control, with a JSON body: create, book, race,
//	                   poison, restart-bookingservice, stop-eventservice,
//	                   start-eventservice, stop-bookingservice,
//	                   start-bookingservice, slow
//
// Controls change the demo's state, so they take JSON only and refuse
// cross-origin requests (http.CrossOriginProtection): another web site
// open in the same browser cannot press them. When the view listens on a
// loopback address it also answers only requests addressed to a loopback
// name, which defeats DNS rebinding.
func (v *View) Handler(loopbackOnly bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, page, "page/index.html")
	})
	mux.HandleFunc("GET /{file}", func(w http.ResponseWriter, r *http.Request) {
		file := r.PathValue("file")
		if !fs.ValidPath(file) {
			http.NotFound(w, r)
			return
		}
		http.ServeFileFS(w, r, page, "page/"+file)
	})
	mux.HandleFunc("GET /api/state", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(v.snapshotJSON())
	})
	mux.HandleFunc("GET /api/stream", v.serveStream)
	mux.HandleFunc("POST /api/{control}", v.serveControl)

	var h http.Handler = http.NewCrossOriginProtection().Handler(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if loopbackOnly && !loopbackHost(r.Host) {
			http.Error(w, "this page answers on 127.0.0.1 or localhost only", http.StatusMisdirectedRequest)
			return
		}
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether a Host header names this machine.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// Serve serves the view on ln until ctx ends; then it closes the page
// streams and shuts the server down.
func (v *View) Serve(ctx context.Context, ln net.Listener) error {
	streams, closeStreams := context.WithCancel(context.Background())
	defer closeStreams()
	tcp, _ := ln.Addr().(*net.TCPAddr)
	srv := &http.Server{
		Handler:           v.Handler(tcp != nil && tcp.IP.IsLoopback()),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No WriteTimeout: a page stream stays open as long as the page.
		BaseContext: func(net.Listener) context.Context { return streams },
		ErrorLog:    slog.NewLogLogger(v.log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serving the live view: %w", err)
	case <-ctx.Done():
	}
	closeStreams()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("stopping the live view: %w", err)
	}
	return nil
}

// serveStream sends the state at once and again after every change, at
// most ten times a second, with a comment line every 15 s to keep proxies
// from closing a quiet stream.
func (v *View) serveStream(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	rc := http.NewResponseController(w)
	var last []byte
	for {
		changed := v.changes()
		if b := v.snapshotJSON(); !bytes.Equal(b, last) {
			if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
			last = b
		}
		quiet := time.NewTimer(15 * time.Second)
		select {
		case <-r.Context().Done():
			quiet.Stop()
			return
		case <-changed:
			quiet.Stop()
		case <-quiet.C:
			if _, err := io.WriteString(w, ": still here\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		}
		pause(r.Context(), 100*time.Millisecond)
	}
}

// busyLabels say on the page what a running control does.
var busyLabels = map[string]string{
	"create": "creating a concert", "book": "booking", "race": "20 clients want the last seat",
	"poison": "sending a poison message", "restart-bookingservice": "restarting BookingService",
	"stop-eventservice": "stopping EventService", "start-eventservice": "starting EventService",
	"stop-bookingservice": "stopping BookingService", "start-bookingservice": "starting BookingService",
	"slow": "switching slow motion",
}

// serveControl runs one control, one at a time, and adds its outcome to
// the activity log.
func (v *View) serveControl(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("control")
	c := v.controls()[name]
	if c == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no control %q", name)})
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		writeJSON(w, http.StatusUnsupportedMediaType, map[string]string{"error": "send the control's body as application/json"})
		return
	}
	var req request
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "reading the control's body: " + err.Error()})
		return
	}
	v.mu.Lock()
	hold, ctx := v.hold, v.ctx
	v.mu.Unlock()
	if ctx == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the demo is still starting"})
		return
	}
	if hold != "" {
		writeJSON(w, http.StatusConflict, map[string]string{"error": hold})
		return
	}
	if !v.actions.TryLock() {
		writeJSON(w, http.StatusConflict, map[string]string{"error": "wait: another control is running"})
		return
	}
	defer v.actions.Unlock()
	v.set(func() { v.busy = busyLabels[name] })
	defer v.set(func() { v.busy = "" })

	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	ok, text, err := c(ctx, req)
	if bad := (badRequest{}); errors.As(err, &bad) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": bad.msg})
		return
	}
	if err != nil {
		ok, text = false, name+": "+err.Error()
	}
	v.note(ok, text)
	writeJSON(w, http.StatusOK, map[string]any{"ok": ok, "message": text})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
