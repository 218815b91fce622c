// Command 06-exchange-types sends the same five MyEvents messages through
// every kind of RabbitMQ exchange and shows which queue got which message.
//
// The default exchange "" delivers to the queue the routing key names; a
// direct exchange to the queues bound with exactly that key; a fanout
// exchange to every bound queue, whatever the key; a headers exchange by the
// message's headers (x-match all or any, and all-with-x or any-with-x to
// count the headers that start with x-); a topic exchange by word patterns,
// as lab 05 shows in full. Every publish is mandatory and confirmed, so a
// message no queue wanted comes back instead of vanishing, and the program
// reads every queue only once the broker has confirmed every message. The
// last section checks the lab's exercise, bindExactly, on each type.
//
// Usage:
//
//	go run ./labs/06-exchange-types [-url amqp://guest:guest@127.0.0.1:5672/] [-prefix lab06] [-keep]
//
// Everything it declares is named after -prefix: the exchanges
// <prefix>.<type>, the queues <prefix>.<type>.<queue>. A run starts by
// deleting what an earlier run left and ends by deleting what it declared.
// With -keep the queues stay with their messages, for five minutes of
// disuse (rabbitmqctl list_queues name messages), and the exchanges go with
// them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"example.com/myevents/contracts"
	"example.com/myevents/labs/labkit"
)

// message is one of the messages that go through every exchange.
type message struct {
	id      string     // m1 to m5, also the AMQP message ID
	key     string     // the routing key: the event name, as MyEvents publishes it
	headers amqp.Table // x-event-name (the event name), region and source; string values only
}

// newMessage builds a message the way MyEvents sends an event: routing key
// and x-event-name header both the event name.
func newMessage(id, event, region, source string) message {
	return message{id: id, key: event, headers: amqp.Table{
		"x-event-name": event,
		"region":       region,
		"source":       source,
	}}
}

// messages go through every exchange, the same five each time.
var messages = []message{
	newMessage("m1", contracts.EventCreatedName, "europe", "admin"),
	newMessage("m2", contracts.EventCreatedName, "asia", "admin"),
	newMessage("m3", contracts.EventBookedName, "europe", "web"),
	newMessage("m4", contracts.EventBookedName, "asia", "box-office"),
	newMessage("m5", contracts.LocationCreatedName, "europe", "admin"),
}

// sendTo is where each message goes through the default exchange: the
// routing key is <prefix>.default.<queue>. mailr is a typo: no queue has
// that name.
var sendTo = map[string]string{"m1": "booking", "m2": "booking", "m3": "mailer", "m4": "mailr", "m5": "booking"}

// defaultQueues are the queues of the default exchange's section.
var defaultQueues = []string{"booking", "mailer"}

// binding is one binding of a queue to an exchange.
type binding struct {
	key  string     // the binding key: equal to the routing key (direct), a pattern (topic), ignored (fanout, headers)
	args amqp.Table // the binding's arguments: for a headers exchange, x-match and the header values to compare
}

// queue is a queue of a section, with bindings written out by hand.
type queue struct {
	name     string // the queue is <prefix>.<type>.<name>
	bindings []binding
}

// section is one exchange and the queues bound to it.
type section struct {
	kind   string // the exchange type; the exchange is <prefix>.<kind>
	rule   string // how it routes
	use    string // where MyEvents uses it, or would
	queues []queue
}

// keys is one binding per key.
func keys(ks ...string) []binding {
	var bs []binding
	for _, k := range ks {
		bs = append(bs, binding{key: k})
	}
	return bs
}

// match is a headers binding: x-match, then header names and values.
func match(xMatch string, pairs ...string) []binding {
	args := amqp.Table{"x-match": xMatch}
	for i := 0; i+1 < len(pairs); i += 2 {
		args[pairs[i]] = pairs[i+1]
	}
	return []binding{{args: args}}
}

// sections are the exchanges after the default one, in the order the
// program shows them.
var sections = []section{
	{
		kind: amqp.ExchangeDirect,
		rule: "a binding key must equal the routing key",
		use:  "in MyEvents: subscribing to exact event names, all BookingService needs",
		queues: []queue{
			{"booking", keys(contracts.EventCreatedName, contracts.LocationCreatedName)},
			{"mailer", keys(contracts.EventBookedName)},
			{"stats", keys(contracts.EventBookedName)}, // the same key as mailer: a copy each
		},
	},
	{
		kind: amqp.ExchangeFanout,
		rule: "every bound queue gets every message; keys are ignored",
		use:  "in MyEvents: each dead-letter exchange, <queue>.dlx (lab 04, the capstone)",
		queues: []queue{
			{"audit", keys("")},
			{"cache", keys(contracts.EventCreatedName)}, // ignored: it gets everything too
		},
	},
	{
		kind: amqp.ExchangeHeaders,
		rule: "the binding's header values must match; keys are ignored",
		use:  "in MyEvents: routing on what the key does not say, such as the region",
		queues: []queue{
			{"europe-web", match("all", "region", "europe", "source", "web")},
			{"asia-or-box", match("any", "region", "asia", "source", "box-office")},
			// all and any skip every binding argument that starts with x-:
			// this binding compares nothing, so it matches every message.
			{"by-name", match("all", "x-event-name", contracts.EventBookedName)},
			// all-with-x (RabbitMQ 3.10 and later) compares x- headers too.
			{"by-name-x", match("all-with-x", "x-event-name", contracts.EventBookedName)},
		},
	},
	{
		kind: amqp.ExchangeTopic,
		rule: "patterns of words: * is one word, # zero or more (lab 05)",
		use:  "in MyEvents: the events exchange; exact names now, patterns when keys grow",
		queues: []queue{
			{"events", keys("event.*")},
			{"created", keys("*.created")},
		},
	},
}

// wish is what one queue wants in the exercise: exactly these messages.
type wish struct {
	name string   // the queue is <prefix>.<type>.wants-<name>
	note string   // who would want that
	ids  []string // the messages it wants, no more, no less
}

// wishes are the exercise's queues: on every exchange after the default
// one, a queue per wish, bound by bindExactly (solution.go; the template is
// exercise.go).
var wishes = []wish{
	{"booking", "what BookingService handles", []string{"m1", "m2", "m5"}},
	{"europe", "everything from Europe", []string{"m1", "m3", "m5"}},
}

// errNotPossible is what bindExactly wraps when no bindings on an
// exchange of the given type can give a queue exactly the wanted messages.
var errNotPossible = errors.New("not possible")

// defaultURL is the local development broker.
const defaultURL = "amqp://guest:guest@127.0.0.1:5672/"

// queueTTL is how long an unused queue lives (x-expires), so that queues
// kept with -keep, or left behind by a crash, clean themselves up.
const queueTTL = 5 * time.Minute

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	interrupted := ctx.Err() != nil // read it before stop, which cancels ctx as well
	stop()
	switch {
	case err != nil && (interrupted || errors.Is(err, context.Canceled)):
		// Ctrl-C: run has deleted what it declared and closed what it
		// opened. 130 is what a shell reports for a program ended by Ctrl-C
		// (128 + SIGINT).
		fmt.Fprintln(os.Stderr, "interrupted: stopped cleanly")
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("06-exchange-types", flag.ContinueOnError)
	// The flag package prints nothing itself (by default it writes to
	// os.Stderr): a bad flag comes back as run's error, which main prints
	// once, and -h prints the usage to out.
	fs.SetOutput(io.Discard)
	amqpURL := fs.String("url", "", "AMQP URL of the broker (default $AMQP_URL, else "+defaultURL+")")
	prefix := fs.String("prefix", "lab06", "first part of every name: exchanges <prefix>.<type>, queues <prefix>.<type>.<queue>")
	keep := fs.Bool("keep", false, "keep the queues and their messages at the end instead of deleting them (they expire after five minutes unused)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(out)
			fs.Usage()
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; see -h", fs.Args())
	}
	if *prefix == "" {
		return errors.New("-prefix must not be empty: the lab names everything it declares after it")
	}
	// The environment supplies the URL unless -url does; the fallback is
	// applied here, not as the flag's default, so that -h never prints a
	// password from AMQP_URL.
	if *amqpURL == "" {
		*amqpURL = labkit.EnvOr("AMQP_URL", defaultURL)
	}

	// Connect. The connection name shows up in rabbitmqctl list_connections.
	conn, err := labkit.DialAMQPContext(ctx, *amqpURL, "myevents-06-exchange-types")
	if err != nil {
		return err
	}
	defer conn.Close()

	// Start from scratch: an earlier run with -keep may have left queues
	// with messages and bindings. Whatever happens below, delete what we
	// declare when we leave, unless -keep says otherwise.
	exchanges, queues := names(*prefix)
	if err := deleteAll(conn, exchanges, queues); err != nil {
		return err
	}
	deleted := false
	defer func() {
		if !deleted && !*keep {
			_ = deleteAll(conn, exchanges, queues)
		}
	}()

	// One channel publishes and reads. Confirm mode: the broker acks a
	// message only once every queue it routed the message to has it, so
	// after the last ack the queues hold all they will ever get. Mandatory
	// publishes that no queue takes come back on returns, before their ack;
	// the buffer lets them wait there while we wait for the ack.
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("opening a channel: %w", err)
	}
	defer ch.Close()
	if err := ch.Confirm(false /* no-wait */); err != nil {
		return fmt.Errorf("enabling publisher confirms: %w", err)
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, len(messages)))

	fmt.Fprintf(out, "exchanges %s.<type>, queues %s.<type>.<queue>\n", *prefix, *prefix)
	fmt.Fprintln(out)
	fmt.Fprintln(out, "the same five messages through every exchange, each with x-event-name = its key:")
	for _, m := range messages {
		fmt.Fprintf(out, "  %s  %-16s  region=%-6s  source=%s\n", m.id, m.key, m.headers["region"], m.headers["source"])
	}

	// The default exchange: no declaring, no binding.
	fmt.Fprintln(out)
	if err := throughDefault(ctx, out, conn, ch, returns, *prefix, *keep); err != nil {
		return err
	}

	// The other types: one exchange each, the same messages.
	outcomes := map[string]map[string]outcome{} // type -> wish -> outcome
	for _, s := range sections {
		if err := ctx.Err(); err != nil {
			return err
		}
		fmt.Fprintln(out)
		o, err := through(ctx, out, ch, returns, *prefix, *keep, s)
		if err != nil {
			return err
		}
		outcomes[s.kind] = o
	}

	// The exercise: what bindExactly made of each wish on each type.
	fmt.Fprintln(out)
	fmt.Fprintln(out, "bindExactly, the exercise: a queue per wish on each exchange, bound to get exactly that")
	for _, w := range wishes {
		fmt.Fprintf(out, "  %s wants %s, %s\n", w.name, strings.Join(w.ids, " "), w.note)
		for _, s := range sections {
			o := outcomes[s.kind][w.name]
			if o.err != nil {
				fmt.Fprintf(out, "    %-8s not possible\n", s.kind)
				continue
			}
			fmt.Fprintf(out, "    %-8s got %s\n", s.kind, list(o.got))
		}
	}

	fmt.Fprintln(out)
	if *keep {
		fmt.Fprintf(out, "kept %d exchanges and %d queues with their messages; they go after %.0f minutes unused\n", len(exchanges), len(queues), queueTTL.Minutes())
		return nil
	}
	deleted = true
	if err := deleteAll(conn, exchanges, queues); err != nil {
		return err
	}
	fmt.Fprintf(out, "deleted %d exchanges and %d queues\n", len(exchanges), len(queues))
	return nil
}

// throughDefault sends every message through the default exchange, each
// to the queue its routing key names, shows what each queue got and what
// came back, and that nothing can be bound to the default exchange.
func throughDefault(ctx context.Context, out io.Writer, conn *amqp.Connection, ch *amqp.Channel, returns <-chan amqp.Return, prefix string, keep bool) error {
	fmt.Fprintln(out, `default exchange "": the routing key is the name of the queue, no binding needed`)

	// Declare the queues. That is all: the broker binds every queue to the
	// default exchange under its own name, and nobody can undo that.
	for _, q := range defaultQueues {
		if err := declareQueue(ch, prefix+".default."+q); err != nil {
			return err
		}
	}

	// Publish each message with the name of its queue as the routing key.
	var sent []string // "m1 m2 to <queue>", in the order of the messages
	byQueue := map[string][]string{}
	for _, m := range messages {
		key := prefix + ".default." + sendTo[m.id]
		if byQueue[key] == nil {
			sent = append(sent, key)
		}
		byQueue[key] = append(byQueue[key], m.id)
		if err := publish(ctx, ch, "", key, m); err != nil {
			return err
		}
	}
	for i, key := range sent {
		sent[i] = strings.Join(byQueue[key], " ") + " to " + key
	}
	fmt.Fprintf(out, "  sent %s\n", strings.Join(sent, ", "))

	// What each queue got, and what came back.
	var lastTag uint64
	for _, q := range defaultQueues {
		got, tag, err := drain(ch, prefix+".default."+q)
		if err != nil {
			return err
		}
		lastTag = max(lastTag, tag)
		fmt.Fprintf(out, "  %-12s %-56s got %s\n", q, "bound by the broker under its own name", list(got))
	}
	if err := settle(ch, lastTag, keep); err != nil {
		return err
	}
	for _, r := range returned(returns) {
		fmt.Fprintf(out, "  returned %s: %d %s, no queue is called %s\n", r.MessageId, r.ReplyCode, r.ReplyText, r.RoutingKey)
	}

	// Try to bind a queue to the default exchange anyway. The broker
	// refuses, and closes the channel it was asked on: use a spare one.
	spare, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("opening a channel: %w", err)
	}
	defer spare.Close()
	err = spare.QueueBind(prefix+".default.booking", contracts.EventCreatedName, "", false /* no-wait */, nil /* args */)
	var amqpErr *amqp.Error
	if !errors.As(err, &amqpErr) {
		return fmt.Errorf("binding a queue to the default exchange: want the broker's refusal, got %v", err)
	}
	fmt.Fprintf(out, "  binding booking to \"\": %d %s\n", amqpErr.Code, amqpErr.Reason)
	fmt.Fprintln(out, "  in MyEvents: the reply to one caller (lab 07); a test filling a service's queue")
	return nil
}

// outcome is what became of one wish on one exchange.
type outcome struct {
	err error    // bindExactly's errNotPossible, or nil
	got []string // the IDs the wish's queue received
}

// through declares the section's exchange and queues, binds them, also
// binds a queue per wish with bindExactly, publishes every message to the
// exchange with its event name as the routing key, and shows what each
// queue got. It returns what became of each wish, after checking it with
// the broker: a queue that bindExactly bound gets exactly what it wanted,
// and one it could not bind gets nothing.
func through(ctx context.Context, out io.Writer, ch *amqp.Channel, returns <-chan amqp.Return, prefix string, keep bool, s section) (map[string]outcome, error) {
	exchange := prefix + "." + s.kind
	fmt.Fprintf(out, "%s exchange %s: %s\n", s.kind, exchange, s.rule)

	// Declare the exchange. Auto-delete: it goes with its last binding, so
	// it also disappears when queues kept with -keep expire.
	if err := ch.ExchangeDeclare(exchange, s.kind,
		false, // durable
		true,  // auto-delete
		false, // internal
		false, // no-wait
		nil,   // args
	); err != nil {
		return nil, fmt.Errorf("declaring exchange %s: %w", exchange, err)
	}

	// Declare the queues and bind them as written above.
	for _, q := range s.queues {
		name := exchange + "." + q.name
		if err := declareQueue(ch, name); err != nil {
			return nil, err
		}
		for _, b := range q.bindings {
			if err := ch.QueueBind(name, b.key, exchange, false /* no-wait */, b.args); err != nil {
				return nil, fmt.Errorf("binding queue %s to %s with %s: %w", name, exchange, describe([]binding{b}), err)
			}
		}
	}

	// The exercise's queues, bound by bindExactly.
	outcomes := map[string]outcome{}
	for _, w := range wishes {
		name := exchange + ".wants-" + w.name
		if err := declareQueue(ch, name); err != nil {
			return nil, err
		}
		err := bindExactly(ch, exchange, s.kind, name, messages, w.ids)
		if err != nil && !errors.Is(err, errNotPossible) {
			return nil, err
		}
		outcomes[w.name] = outcome{err: err}
	}

	// Publish the messages, routing key = event name.
	for _, m := range messages {
		if err := publish(ctx, ch, exchange, m.key, m); err != nil {
			return nil, err
		}
	}

	// Read every queue, and show what it got.
	var lastTag uint64
	for _, q := range s.queues {
		got, tag, err := drain(ch, exchange+"."+q.name)
		if err != nil {
			return nil, err
		}
		lastTag = max(lastTag, tag)
		fmt.Fprintf(out, "  %-12s %-56s got %s\n", q.name, "bound with "+describe(q.bindings), list(got))
	}
	for _, w := range wishes {
		name := exchange + ".wants-" + w.name
		got, tag, err := drain(ch, name)
		if err != nil {
			return nil, err
		}
		lastTag = max(lastTag, tag)
		o := outcomes[w.name]
		o.got = got
		outcomes[w.name] = o
		// Check bindExactly's work against what the broker did.
		switch {
		case o.err != nil && len(got) > 0:
			return nil, fmt.Errorf("bindExactly said a %s exchange cannot give %s exactly %s (%v), but bound it anyway: it got %s", s.kind, name, list(w.ids), o.err, list(got))
		case o.err == nil && !slices.Equal(got, w.ids):
			return nil, fmt.Errorf("bindExactly bound %s to the %s exchange for exactly %s, but it got %s", name, s.kind, list(w.ids), list(got))
		}
	}
	if err := settle(ch, lastTag, keep); err != nil {
		return nil, err
	}
	for _, r := range returned(returns) {
		fmt.Fprintf(out, "  returned %s: %d %s\n", r.MessageId, r.ReplyCode, r.ReplyText)
	}
	fmt.Fprintf(out, "  %s\n", s.use)
	return outcomes, nil
}

// declareQueue declares one of the lab's queues: not durable, and gone
// after five minutes unused, so that a queue -keep or a crash leaves behind
// cleans itself up.
func declareQueue(ch *amqp.Channel, name string) error {
	_, err := ch.QueueDeclare(name,
		false, // durable
		false, // auto-delete
		false, // exclusive: with -keep, other connections read it
		false, // no-wait
		amqp.Table{"x-expires": queueTTL.Milliseconds()},
	)
	if err != nil {
		return fmt.Errorf("declaring queue %s: %w", name, err)
	}
	return nil
}

// publish sends m to exchange with routing key key, mandatory, and waits
// for the broker's confirm.
func publish(ctx context.Context, ch *amqp.Channel, exchange, key string, m message) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	confirm, err := ch.PublishWithDeferredConfirmWithContext(ctx,
		exchange,
		key,
		true,  // mandatory: hand the message back if no queue takes it
		false, // immediate (RabbitMQ does not support it)
		amqp.Publishing{
			Headers:     m.headers,
			ContentType: "text/plain",
			MessageId:   m.id,
			Body:        []byte(m.id + ": " + m.key),
		},
	)
	if err == nil {
		var acked bool
		acked, err = confirm.WaitContext(ctx)
		if err == nil && !acked {
			err = errors.New("the broker refused it (nack)")
		}
	}
	if err != nil {
		return fmt.Errorf("publishing %s to exchange %q with routing key %s: %w", m.id, exchange, key, err)
	}
	return nil
}

// returned takes the returns waiting in the channel. A return arrives
// before the confirm of its message, so once every confirm is in, every
// return is waiting.
func returned(returns <-chan amqp.Return) []amqp.Return {
	var rs []amqp.Return
	for {
		select {
		case r := <-returns:
			rs = append(rs, r)
		default:
			return rs
		}
	}
}

// drain reads a queue until it is empty, without auto-ack, and returns the
// message IDs in the order they came and the last delivery tag.
func drain(ch *amqp.Channel, name string) ([]string, uint64, error) {
	var ids []string
	var last uint64
	for {
		d, ok, err := ch.Get(name, false /* auto-ack */)
		if err != nil {
			return nil, 0, fmt.Errorf("reading queue %s: %w", name, err)
		}
		if !ok {
			return ids, last, nil
		}
		ids, last = append(ids, d.MessageId), d.DeliveryTag
	}
}

// settle acknowledges every message read on the channel so far, or, with
// -keep, hands them back to their queues.
func settle(ch *amqp.Channel, lastTag uint64, keep bool) error {
	if lastTag == 0 {
		return nil
	}
	var err error
	if keep {
		err = ch.Nack(lastTag, true /* multiple */, true /* requeue */)
	} else {
		err = ch.Ack(lastTag, true /* multiple */)
	}
	if err != nil {
		return fmt.Errorf("settling the messages read: %w", err)
	}
	return nil
}

// names lists every exchange and queue the program declares.
func names(prefix string) (exchanges, queues []string) {
	for _, q := range defaultQueues {
		queues = append(queues, prefix+".default."+q)
	}
	for _, s := range sections {
		exchange := prefix + "." + s.kind
		exchanges = append(exchanges, exchange)
		for _, q := range s.queues {
			queues = append(queues, exchange+"."+q.name)
		}
		for _, w := range wishes {
			queues = append(queues, exchange+".wants-"+w.name)
		}
	}
	return exchanges, queues
}

// deleteAll deletes the exchanges and the queues, on a channel of its own
// so that it works after another channel was closed by an error. Deleting
// what does not exist is not an error.
func deleteAll(conn *amqp.Connection, exchanges, queues []string) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("opening a channel to clean up: %w", err)
	}
	defer ch.Close()
	for _, x := range exchanges {
		if err := ch.ExchangeDelete(x, false /* if-unused */, false /* no-wait */); err != nil {
			return fmt.Errorf("deleting exchange %s: %w", x, err)
		}
	}
	for _, q := range queues {
		if _, err := ch.QueueDelete(q,
			false, // if-unused
			false, // if-empty
			false, // no-wait
		); err != nil {
			return fmt.Errorf("deleting queue %s: %w", q, err)
		}
	}
	return nil
}

// describe shows bindings the way the output prints them: the keys, or for
// a headers binding x-match and then the header values by name.
func describe(bs []binding) string {
	var parts []string
	for _, b := range bs {
		if b.args == nil {
			key := b.key
			if key == "" {
				key = `""`
			}
			parts = append(parts, key)
			continue
		}
		names := make([]string, 0, len(b.args))
		for k := range b.args {
			if k != "x-match" {
				names = append(names, k)
			}
		}
		sort.Strings(names)
		s := fmt.Sprintf("x-match=%v", b.args["x-match"])
		for _, k := range names {
			s += fmt.Sprintf(" %s=%v", k, b.args[k])
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// list shows message IDs, or "nothing".
func list(ids []string) string {
	if len(ids) == 0 {
		return "nothing"
	}
	return strings.Join(ids, " ")
}
