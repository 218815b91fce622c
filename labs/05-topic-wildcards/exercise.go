//go:build exercise

package main

import "example.com/myevents/labs/labkit"

// routes reports whether a topic exchange delivers a message published
// with routing key key to a queue bound with pattern. Key and pattern are
// words separated by dots; in the pattern, * stands for exactly one word
// and # for zero or more words. A pattern or key longer than 255 bytes is
// an error: AMQP carries both as short strings, so no broker ever sees one.
//
// Exercise: write it, following the steps below. Check it with
//
//	go test -tags exercise ./labs/05-topic-wildcards
//
// and see it in the program with go run -tags exercise ./labs/05-topic-wildcards.
// The hints are in docs/exercises.md; the answer is in solution.go.
func routes(pattern, key string) (bool, error) {
	// Refuse what no broker can receive: more than 255 bytes.

	// Match word by word, from the left: match reports whether the words
	// left in the pattern match the words left in the key.

	// No pattern words left: a match only if no key words are left.

	// # takes zero words, or one, or more: try each, and match the
	// rest of the pattern against what is left.

	// * takes exactly one word, whatever it is.

	// Any other word must equal the key's next word.

	// Split both at the dots, and match. An empty key (or pattern) has no
	// words at all, not one empty word: the broker sends "" to # and to no
	// pattern with a *.

	return false, labkit.TODO("routes", "match the key's words against the pattern's: * is one word, # zero or more")
}
