package live

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// newTestServer serves a view that watches nothing: the services' URLs
// are empty, so the polls find them down. Enough for the guards around
// the controls, which are what these tests check; the browser test in
// package main drives the controls against the real system.
func newTestServer(t *testing.T) (*View, *httptest.Server) {
	t.Helper()
	v := New(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v.Connect(ctx, Config{})
	srv := httptest.NewServer(v.Handler(true))
	t.Cleanup(srv.Close)
	return v, srv
}

// post sends a control and returns the status and the body.
func post(t *testing.T, srv *httptest.Server, path, contentType, body string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestControlGuards(t *testing.T) {
	v, srv := newTestServer(t)
	const js = "application/json"
	tests := []struct {
		name              string
		path, ctype, body string
		header            map[string]string
		want              int
		wantBody          string
	}{
		{"another web site", "/api/slow", js, `{"on":false}`, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}, http.StatusForbidden, ""},
		{"a form post", "/api/slow", "application/x-www-form-urlencoded", "on=false", nil, http.StatusUnsupportedMediaType, "application/json"},
		{"DNS rebinding", "/api/slow", js, `{"on":false}`, map[string]string{"Host": "evil.example:8080"}, http.StatusMisdirectedRequest, "127.0.0.1 or localhost"},
		{"unknown control", "/api/format-disk", js, `{}`, nil, http.StatusNotFound, `no control \"format-disk\"`},
		{"unknown field", "/api/slow", js, `{"on":false,"sudo":true}`, nil, http.StatusBadRequest, "unknown field"},
		{"unknown concert", "/api/book", js, `{"event":"NOPE","seats":1}`, nil, http.StatusBadRequest, "no concert"},
		{"too many seats", "/api/create", js, `{"name":"X","seats":1001}`, nil, http.StatusBadRequest, "seats must be 1 to 1000"},
		{"a control that works", "/api/slow", js, `{"on":false}`, nil, http.StatusOK, "slow motion off"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := post(t, srv, tt.path, tt.ctype, tt.body, tt.header)
			if status != tt.want || !strings.Contains(body, tt.wantBody) {
				t.Errorf("POST %s: %d %s, want %d with %q", tt.path, status, body, tt.want, tt.wantBody)
			}
		})
	}
	// Only the control that works changed anything.
	if v.isSlow() {
		t.Error("slow motion is still on after the control that turns it off")
	}
	var s snapshot
	if err := json.Unmarshal(v.snapshotJSON(), &s); err != nil {
		t.Fatal(err)
	}
	if len(s.Activity) != 1 || !strings.Contains(s.Activity[0].Text, "slow motion off") {
		t.Errorf("activity = %+v, want one line from the control that worked", s.Activity)
	}

	// While the story plays, every control waits.
	v.Hold("the story is playing")
	if status, body := post(t, srv, "/api/slow", js, `{"on":true}`, nil); status != http.StatusConflict || !strings.Contains(body, "the story is playing") {
		t.Errorf("a control during the story: %d %s, want 409", status, body)
	}
}

// TestStream: the page gets the state at once, as a server-sent event.
func TestStream(t *testing.T) {
	_, srv := newTestServer(t)
	resp, err := srv.Client().Get(srv.URL + "/api/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type = %q", ct)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	data, ok := strings.CutPrefix(line, "data: ")
	if !ok {
		t.Fatalf("first line %q is not an event", line)
	}
	var s snapshot
	if err := json.Unmarshal([]byte(data), &s); err != nil {
		t.Fatalf("decoding the state: %v", err)
	}
	if len(s.Services) != 2 || !s.Slow {
		t.Errorf("state = %+v, want both services and slow motion on", s)
	}
}

// TestPage: the page and its files are served with a strict policy, and
// nothing else is.
func TestPage(t *testing.T) {
	_, srv := newTestServer(t)
	for path, want := range map[string]int{"/": 200, "/app.js": 200, "/style.css": 200, "/nope.js": 404, "/..%2fview.go": 404} {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy = %q", path, csp)
		}
	}
}
