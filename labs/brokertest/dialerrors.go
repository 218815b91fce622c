package brokertest

import (
	"bytes"
	"context"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"
)

// CheckDialErrors runs a lab's program against the usual connection
// mistakes (a URL of the wrong scheme, a malformed URL, a wrong password
// for the test's RabbitMQ, a port nobody listens on) and checks that each
// fails with one line that says what is wrong and what to do, without the
// password, and that the program printed nothing before failing. run runs
// the program with amqpURL given as -url; t is the subtest's, for names.
func CheckDialErrors(t *testing.T, run func(ctx context.Context, t *testing.T, amqpURL string, out io.Writer) error) {
	t.Helper()
	const password = "definitely-wrong"
	rabbit := AMQP(t)
	wrong, err := url.Parse(rabbit.URL)
	if err != nil {
		t.Fatal(err)
	}
	wrong.User = url.UserPassword(wrong.User.Username(), password)
	for _, tc := range []struct{ name, url, want string }{
		{"wrong scheme", "http://guest:" + password + "@127.0.0.1:5672/", "the AMQP URL in -url or AMQP_URL is malformed"},
		{"malformed URL", "amqp://guest:" + password + "%zz@127.0.0.1:5672/", "the AMQP URL in -url or AMQP_URL is malformed"},
		{"wrong credentials", wrong.String(), "refused the user name or password"},
		{"nothing listening", "amqp://guest:" + password + "@" + ClosedPort(t) + "/", "nothing is listening there"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var out bytes.Buffer
			err := run(ctx, t, tc.url, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run = %v, want an error containing %q", err, tc.want)
			}
			if msg := err.Error(); strings.Contains(msg, password) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line that hides the password", msg)
			}
			if out.Len() != 0 {
				t.Errorf("printed %q before failing; want nothing", out.String())
			}
		})
	}
}
