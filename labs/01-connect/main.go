// Command 01-connect shows what connecting to RabbitMQ means: one TCP connection,
// an AMQP handshake in which client and broker agree on limits, channels
// multiplexed over that one connection, and how a program learns that its
// connection has died.
//
// Usage:
//
//	go run ./labs/01-connect
//	go run ./labs/01-connect -url amqp://guest:guest@127.0.0.1:5672/
//	go run ./labs/01-connect -hold    # stay connected until Ctrl-C or until the broker closes the connection
//
// With -hold, Ctrl-C is the normal way to end the run: the program closes
// its channels and connection and exits with status 0.
//
// The URL comes from -url, else from the AMQP_URL environment variable, else
// amqp://guest:guest@127.0.0.1:5672/ (twelve-factor style: configuration in
// the environment, a local default for development).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// defaultURL is the local development broker.
const defaultURL = "amqp://guest:guest@127.0.0.1:5672/"

// dialTimeout bounds the TCP connect and the AMQP handshake. RabbitMQ waits
// about 3 s before it hangs up on a wrong password, so keep this above that:
// on a timeout during the login step the client library cannot tell a slow
// broker from a refused password and reports the latter.
const dialTimeout = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	interrupted := ctx.Err() != nil // read it before stop, which cancels ctx as well
	stop()
	switch {
	case err != nil && (interrupted || errors.Is(err, context.Canceled)):
		// Ctrl-C: run has closed what it opened. 130 is what a shell
		// reports for a program ended by Ctrl-C (128 + SIGINT).
		fmt.Fprintln(os.Stderr, "interrupted: stopped cleanly")
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("01-connect", flag.ContinueOnError)
	amqpURL := fs.String("url", "", "AMQP URL of the broker (default $AMQP_URL, else "+defaultURL+")")
	connName := fs.String("conn-name", "myevents-01-connect", "connection name the broker shows for this client (rabbitmqctl list_connections client_properties)")
	hold := fs.Bool("hold", false, "stay connected until Ctrl-C or until the broker closes the connection")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; see -h", fs.Args())
	}
	// The environment supplies the URL unless -url does. The fallback is
	// applied here, not as the flag's default, so that -h never prints a
	// password taken from AMQP_URL.
	if *amqpURL == "" {
		*amqpURL = envOr("AMQP_URL", defaultURL)
	}

	// Check the URL before dialing, so that a typo does not look like a
	// network problem.
	if _, err := amqp.ParseURI(*amqpURL); err != nil {
		return malformedURL(err)
	}

	// Dial: one TCP connection, then the AMQP handshake on it. The broker
	// announces itself, checks the user name and password, and both sides
	// agree on the limits (channels, frame size, heartbeat). dial is this
	// lab's exercise (solution.go, exercise.go): it names the connection and
	// tells a refused login from an absent broker; explainDialError below
	// explains the rarer failures.
	//
	// The library's dial takes no context: a server that accepts the TCP
	// connection and never answers would hold us for the whole dialTimeout,
	// deaf to Ctrl-C. So dial in a goroutine of its own, and stop waiting
	// when ctx ends.
	type dialed struct {
		conn *amqp.Connection
		err  error
	}
	done := make(chan dialed, 1)
	go func() {
		conn, err := dial(*amqpURL, *connName)
		done <- dialed{conn, err}
	}()
	var conn *amqp.Connection
	select {
	case d := <-done:
		if d.err != nil {
			return explainDialError(*amqpURL, d.err)
		}
		conn = d.conn
	case <-ctx.Done():
		// Given up on: close the connection if it comes after all.
		go func() {
			if d := <-done; d.conn != nil {
				_ = d.conn.Close()
			}
		}()
		return fmt.Errorf("connecting to RabbitMQ at %s: %w", redact(*amqpURL), ctx.Err())
	}
	defer conn.Close() // a second Close after the explicit one below is harmless
	fmt.Fprintf(out, "connected to %s\n", redact(*amqpURL))

	// Register for the connection's death notice right away. When the broker
	// or the network ends the connection, the library sends one *amqp.Error
	// here; when we close it ourselves, it closes the Go channel without
	// sending anything. Give the channel a buffer of one: amqp091-go tries
	// the send once without waiting, and if there is no room and nobody is
	// receiving at that instant, it retries in the background for up to 5 s
	// while it goes on to close the channel. The error is then usually lost,
	// and the broker's close looks like our own. One slot always fits it.
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))

	// Print what the broker said about itself in its first message
	// (connection.start), and what the handshake settled on.
	fmt.Fprintf(out, "server: %v %v on %v, AMQP %d-%d\n",
		conn.Properties["product"], conn.Properties["version"], conn.Properties["platform"], conn.Major, conn.Minor)
	fmt.Fprintf(out, "locales offered: %s\n", strings.Join(conn.Locales, " "))
	fmt.Fprintf(out, "negotiated: channel max %d, frame max %d bytes, heartbeat %v\n",
		conn.Config.ChannelMax, conn.Config.FrameSize, conn.Config.Heartbeat)

	// Open two channels. Channels are cheap, numbered lanes inside the one
	// TCP connection: every frame carries its channel number, so many
	// channels share one socket without a new TCP and AMQP handshake each.
	// The rule: a channel belongs to one goroutine. Publishing from several
	// goroutines on one channel happens to work, but synchronous calls
	// (declare, bind, get, ...) wait for "the next reply on this channel",
	// so two goroutines calling at once can receive each other's replies.
	// Open one channel per goroutine instead.
	first, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("opening the first channel: %w", err)
	}
	second, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("opening the second channel: %w", err)
	}
	fmt.Fprintf(out, "opened 2 channels on one TCP connection (local port %d)\n", localPort(conn))

	// With -hold, wait for Ctrl-C or for the broker to end the connection.
	// Try `rabbitmqctl close_connection` on your own broker and watch the
	// NotifyClose channel report it.
	if *hold {
		fmt.Fprintln(out, "holding the connection open: press Ctrl-C to close it, or close it from the broker")
		select {
		case <-ctx.Done():
		case amqpErr, ok := <-closed:
			if !ok || amqpErr == nil {
				return errors.New("the connection closed without a reason")
			}
			fmt.Fprintf(out, "NotifyClose: the broker closed the connection: %s (code %d)\n", amqpErr.Reason, amqpErr.Code)
			// Its channels died with it. A long-running service would now
			// dial again and rebuild its channels (the capstone's AMQP
			// transport, capstone/msgqueue/rabbitmq, does that).
			return fmt.Errorf("lost the connection to %s: %w; a service would reconnect here, this lab stops", redact(*amqpURL), amqpErr)
		}
	}

	// Close the channels, then the connection. Closing the connection would
	// close its channels too; closing them first is the tidy order and
	// what a program does with a channel it no longer needs.
	if err := second.Close(); err != nil {
		return fmt.Errorf("closing the second channel: %w", err)
	}
	if err := first.Close(); err != nil {
		return fmt.Errorf("closing the first channel: %w", err)
	}
	if err := conn.Close(); err != nil {
		return fmt.Errorf("closing the connection: %w", err)
	}
	fmt.Fprintln(out, "closed both channels, then the connection")

	// A close we asked for arrives as a closed NotifyClose channel with no
	// error in it.
	if amqpErr, ok := <-closed; ok && amqpErr != nil {
		return fmt.Errorf("the connection ended with an error while closing: %w", amqpErr)
	}
	fmt.Fprintln(out, "NotifyClose: closed without an error, so the close was ours")
	return nil
}

// envOr returns the environment variable's value, or def when it is unset or
// empty.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// redact hides the password of a URL that has already passed
// amqp.ParseURI.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "<unparseable URL>"
	}
	return u.Redacted()
}

// localPort returns the client-side TCP port of the connection.
func localPort(conn *amqp.Connection) int {
	if addr, ok := conn.LocalAddr().(*net.TCPAddr); ok {
		return addr.Port
	}
	return 0
}

// malformedURL explains a URL that amqp.ParseURI rejected. The URL itself is
// not repeated: it may hold a password, and one that does not parse cannot
// be redacted.
func malformedURL(err error) error {
	cause := err
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		cause = urlErr.Err // the *url.Error text quotes the whole URL
	}
	return fmt.Errorf("the AMQP URL in -url or AMQP_URL is malformed (%v); write it as amqp://user:password@host:5672/vhost and percent-encode reserved characters in the password", cause)
}

// The two commonest ways a dial fails. dial wraps them, so that the
// sentence names the cause and a test (or a caller) can tell them apart
// with errors.Is.
var (
	// errLoginRefused: the broker answered, and refused the user name or
	// password.
	errLoginRefused = errors.New("the broker refused the user name or password")
	// errNoBroker: nothing accepted the TCP connection at that address.
	errNoBroker = errors.New("nothing is listening there")
)

// explainDialError turns a failure that dial did not explain into one
// sentence: what went wrong and what to do about it. What dial already
// explained (errLoginRefused, errNoBroker) passes through unchanged.
func explainDialError(rawURL string, err error) error {
	where := redact(rawURL)
	var amqpErr *amqp.Error
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.Is(err, errLoginRefused), errors.Is(err, errNoBroker):
		return err
	case errors.Is(err, amqp.ErrVhost), errors.As(err, &amqpErr) && amqpErr.Code == amqp.NotAllowed:
		return fmt.Errorf("connecting to RabbitMQ at %s: the broker refused access to the virtual host (%w); check the vhost at the end of the URL and the user's permissions", where, err)
	case errors.As(err, &dnsErr):
		return fmt.Errorf("connecting to RabbitMQ at %s: the host name does not resolve (%w); check the host in -url or AMQP_URL", where, err)
	case errors.Is(err, amqp.ErrClosed), errors.As(err, &amqpErr) && amqpErr.Code == amqp.FrameError:
		// Garbage instead of connection.start, or a hang-up before it.
		return fmt.Errorf("connecting to RabbitMQ at %s: something accepts connections there, but it does not speak AMQP (%w); point -url or AMQP_URL at RabbitMQ's AMQP port (5672 unless configured otherwise)", where, err)
	case errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Errorf("connecting to RabbitMQ at %s: no answer within %v (%w); check the host, the port and any firewall on the way", where, dialTimeout, err)
	}
	return fmt.Errorf("connecting to RabbitMQ at %s: %w", where, err)
}
