// Package endpoint reads and shows where a program's brokers and databases
// are: it splits a broker list and redacts a URL or DSN for messages and
// logs, the same way in every capstone command, lab and test.
//
// It depends on the standard library only, so that the capstone, the labs
// and the test harness (labs/brokertest) can all import it.
package endpoint

import (
	"net/url"
	"strconv"
	"strings"
)

// What Redact shows instead of a string it cannot show safely.
const (
	// Unparseable stands for a URL that does not parse: its password
	// cannot be found, so nothing of it is shown.
	Unparseable = "<unparseable URL>"
	// Hidden stands for a string that is not a URL but may hold a password,
	// such as a key=value DSN ("host=db password=secret").
	Hidden = "<hidden: it may hold a password>"
)

// redactedValue replaces a password, as url.URL.Redacted does.
const redactedValue = "xxxxx"

// Redact returns raw with its password hidden, for messages and logs:
//
//   - a URL with a scheme ("amqp://guest:guest@host:5672/",
//     "postgres://u:pw@db/x?password=pw") is shown as url.URL.Redacted
//     shows it, with the value of any query parameter whose name holds
//     "pass" (pgx reads password= and sslpassword=) hidden as well;
//   - a string that does not parse as a URL is shown as [Unparseable];
//   - any other string that holds "@", "=" or "pass" (a key=value DSN, a
//     URL missing its "://") is shown as [Hidden];
//   - anything else ("sqlite3", "sqlite:x.db") is shown as it is.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return Unparseable
	case u.Scheme != "" && u.Opaque == "":
		return redactURL(u)
	case strings.ContainsAny(raw, "@=") || strings.Contains(strings.ToLower(raw), "pass"):
		return Hidden
	}
	return raw
}

// redactURL hides the password in the user information and in the query.
func redactURL(u *url.URL) string {
	q := u.Query()
	hid := false
	for name, values := range q {
		if strings.Contains(strings.ToLower(name), "pass") {
			for i := range values {
				values[i] = redactedValue
			}
			hid = true
		}
	}
	if hid {
		c := *u
		c.RawQuery = q.Encode()
		u = &c
	}
	return u.Redacted()
}

// Quote is Redact for a value set inside a sentence: the redacted string in
// double quotes, so that an empty or odd value stays visible, unless Redact
// hid it all ([Unparseable] or [Hidden]).
func Quote(raw string) string {
	shown := Redact(raw)
	if shown == Unparseable || shown == Hidden {
		return shown
	}
	return strconv.Quote(shown)
}

// SplitList turns a comma-separated list such as a KAFKA_BROKERS value
// ("a:9092, b:9092") into its items, without blanks and empty items.
func SplitList(list string) []string {
	var out []string
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
