//go:build !exercise

package main

import (
	"fmt"
	"strings"
)

// routes reports whether a topic exchange delivers a message published
// with routing key key to a queue bound with pattern. Key and pattern are
// words separated by dots; in the pattern, * stands for exactly one word
// and # for zero or more words. A pattern or key longer than 255 bytes is
// an error: AMQP carries both as short strings, so no broker ever sees one.
//
// This is the lab's exercise: exercise.go holds the template, and
// go test -tags exercise ./labs/05-topic-wildcards checks it.
func routes(pattern, key string) (bool, error) {
	// Refuse what no broker can receive: more than 255 bytes.
	if len(pattern) > 255 {
		return false, fmt.Errorf("binding pattern %.20q... has %d bytes; AMQP allows at most 255", pattern, len(pattern))
	}
	if len(key) > 255 {
		return false, fmt.Errorf("routing key %.20q... has %d bytes; AMQP allows at most 255", key, len(key))
	}

	// Match word by word, from the left: match reports whether the words
	// left in the pattern match the words left in the key.
	var match func(p, k []string) bool
	match = func(p, k []string) bool {
		// No pattern words left: a match only if no key words are left.
		if len(p) == 0 {
			return len(k) == 0
		}
		switch p[0] {
		case "#":
			// # takes zero words, or one, or more: try each, and match the
			// rest of the pattern against what is left.
			for i := 0; i <= len(k); i++ {
				if match(p[1:], k[i:]) {
					return true
				}
			}
			return false
		case "*":
			// * takes exactly one word, whatever it is.
			return len(k) > 0 && match(p[1:], k[1:])
		default:
			// Any other word must equal the key's next word.
			return len(k) > 0 && k[0] == p[0] && match(p[1:], k[1:])
		}
	}

	// Split both at the dots, and match. An empty key (or pattern) has no
	// words at all, not one empty word: the broker sends "" to # and to no
	// pattern with a *.
	words := func(s string) []string {
		if s == "" {
			return nil
		}
		return strings.Split(s, ".")
	}
	return match(words(pattern), words(key)), nil
}
