package servicetest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Server serves a handler over real HTTP for one test.
type Server struct {
	t   testing.TB
	URL string
}

// Serve starts an httptest server for h, closed when the test ends.
func Serve(t testing.TB, h http.Handler) *Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &Server{t: t, URL: srv.URL}
}

// At talks to a service already serving at url (such as one started with
// app.Start).
func At(t testing.TB, url string) *Server { return &Server{t: t, URL: url} }

// Do sends a request with body as JSON (none if body is empty) and returns
// the status and the response body. It is safe for concurrent use, but a
// transport failure ends the test, so call it from the test's goroutine or
// use Try.
func (s *Server) Do(method, path, body string) (int, []byte) {
	s.t.Helper()
	status, resp, err := s.Try(method, path, body)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	return status, resp
}

// Try is Do returning transport failures instead of ending the test; use it
// from other goroutines.
func (s *Server) Try(method, path, body string) (int, []byte, error) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL+path, r)
	if err != nil {
		return 0, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// JSON sends a request, requires status want and decodes the JSON answer
// into into (unless into is nil).
func (s *Server) JSON(method, path, body string, want int, into any) {
	s.t.Helper()
	status, resp := s.Do(method, path, body)
	if status != want {
		s.t.Fatalf("%s %s = %d %s, want %d", method, path, status, resp, want)
	}
	if into == nil {
		return
	}
	if err := json.Unmarshal(resp, into); err != nil {
		s.t.Fatalf("%s %s: decoding %s: %v", method, path, resp, err)
	}
}

// WantError sends a request and requires status want and a body that is
// exactly {"error": "..."} with a message containing part.
func (s *Server) WantError(method, path, body string, want int, part string) {
	s.t.Helper()
	status, resp := s.Do(method, path, body)
	if status != want {
		s.t.Fatalf("%s %s = %d %s, want %d", method, path, status, resp, want)
	}
	var e map[string]any
	if err := json.Unmarshal(resp, &e); err != nil || len(e) != 1 {
		s.t.Fatalf("%s %s: body %s is not {\"error\": \"...\"}", method, path, resp)
	}
	msg, ok := e["error"].(string)
	if !ok || msg == "" || !strings.Contains(msg, part) {
		s.t.Fatalf("%s %s: error %q does not contain %q", method, path, e["error"], part)
	}
}
