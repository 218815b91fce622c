package endpoint_test

import (
	"fmt"
	"slices"
	"testing"

	"example.com/myevents/capstone/endpoint"
)

func TestRedact(t *testing.T) {
	for _, tc := range []struct {
		raw, want string
	}{
		{"amqp://guest:guest@127.0.0.1:5672/", "amqp://guest:xxxxx@127.0.0.1:5672/"},
		{"amqp://guest:s3cret@host:5672/vhost", "amqp://guest:xxxxx@host:5672/vhost"},
		{"amqp://guest@host:5672/", "amqp://guest@host:5672/"},
		{"amqp://host", "amqp://host"},
		{"postgres://postgres:secret@127.0.0.1:5432/test?sslmode=disable", "postgres://postgres:xxxxx@127.0.0.1:5432/test?sslmode=disable"},
		{"postgres://u@db/x?password=secret&sslmode=disable", "postgres://u@db/x?password=xxxxx&sslmode=disable"},
		{"postgres://u@db/x?sslpassword=secret", "postgres://u@db/x?sslpassword=xxxxx"},
		{"postgres://u:pw@/x?host=/run/postgresql", "postgres://u:xxxxx@/x?host=/run/postgresql"},
		{"mysql://root:secret@db/x", "mysql://root:xxxxx@db/x"},
		{"sqlite:/tmp/x.db", "sqlite:/tmp/x.db"},
		{"memory:", "memory:"},
		{"sqlite:x.db", "sqlite:x.db"},
		{"amqp://guest:s3cret@127.0.0.1:5672/%zz", endpoint.Unparseable},
		{"postgres://postgres:secret@127.0.0.1:1/%zz", endpoint.Unparseable},
		{"host=db password=secret", endpoint.Hidden},
		{"postgres//user:pw@db", endpoint.Hidden},
		{"postgres:user:pw@db", endpoint.Hidden},
		{"PASSWORD", endpoint.Hidden},
		{"sqlite3", "sqlite3"},
		{"", ""},
	} {
		if got := endpoint.Redact(tc.raw); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.raw, got, tc.want)
		}
	}
}

func TestQuote(t *testing.T) {
	for _, tc := range []struct {
		raw, want string
	}{
		{"mysql://root:secret@db/x", `"mysql://root:xxxxx@db/x"`},
		{"sqlite3", `"sqlite3"`},
		{"", `""`},
		{"host=db password=secret", endpoint.Hidden},
		{"redis://%zz", endpoint.Unparseable},
	} {
		if got := endpoint.Quote(tc.raw); got != tc.want {
			t.Errorf("Quote(%q) = %q, want %q", tc.raw, got, tc.want)
		}
	}
}

func TestSplitList(t *testing.T) {
	for _, tc := range []struct {
		list string
		want []string
	}{
		{"", nil},
		{" , ,", nil},
		{"127.0.0.1:9092", []string{"127.0.0.1:9092"}},
		{"a:1, b:2,,c:3 ", []string{"a:1", "b:2", "c:3"}},
	} {
		if got := endpoint.SplitList(tc.list); !slices.Equal(got, tc.want) {
			t.Errorf("SplitList(%q) = %q, want %q", tc.list, got, tc.want)
		}
	}
}

func ExampleRedact() {
	fmt.Println(endpoint.Redact("amqp://guest:guest@127.0.0.1:5672/"))
	fmt.Println(endpoint.Redact("host=db password=secret"))
	// Output:
	// amqp://guest:xxxxx@127.0.0.1:5672/
	// <hidden: it may hold a password>
}
