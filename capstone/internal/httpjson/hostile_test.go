package httpjson

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"example.com/myevents/contracts"
)

// TestDecodeRefusesInvalidUTF8: bytes that are not UTF-8 are a 400, not
// silently replaced with U+FFFD by the JSON decoder.
func TestDecodeRefusesInvalidUTF8(t *testing.T) {
	srv := httptest.NewServer(decodeHandler())
	defer srv.Close()
	for _, body := range []string{"{\"name\":\"a\xffb\"}", "{\"name\":\"\xc3\x28\"}", "{\"name\":\"\xed\xa0\x80\"}"} {
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(got), "not valid UTF-8") {
			t.Errorf("%q: %d %s, want 400 not valid UTF-8", body, resp.StatusCode, got)
		}
	}
}

// TestPath: a path value the check refuses is a 400 naming it.
func TestPath(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("GET /events/{id}", Handle(slog.New(slog.DiscardHandler), func(w http.ResponseWriter, r *http.Request) error {
		id, err := Path(r, "id", "event id", contracts.CheckID)
		if err != nil {
			return err
		}
		Write(w, http.StatusOK, id)
		return nil
	}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for path, want := range map[string]string{
		"/events/ev1": `"ev1"`,
		"/events/%00": "event id holds a control character (U+0000) at byte 0",
		"/events/%FF": "event id is not valid UTF-8",
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(got), want) || (resp.StatusCode == 200) != (path == "/events/ev1") {
			t.Errorf("GET %s = %d %s, want %s", path, resp.StatusCode, got, want)
		}
	}
}

// TestDataErrorsAreNot500: a value the database refuses is the client's
// fault, never an internal error.
func TestDataErrorsAreNot500(t *testing.T) {
	refused := fmt.Errorf("storing event: %w", &pgconn.PgError{Code: "22021", Message: "invalid byte sequence"})
	rec := httptest.NewRecorder()
	WriteError(rec, httptest.NewRequest("GET", "/x", nil), slog.New(slog.DiscardHandler), refused)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("a data error answered %d %s, want 400", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	WriteError(rec, httptest.NewRequest("GET", "/x", nil), slog.New(slog.DiscardHandler), &pgconn.PgError{Code: "57P01"})
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("an admin shutdown answered %d, want 500", rec.Code)
	}
}
