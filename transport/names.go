package transport

import (
	"strings"
	"unicode/utf8"
)

// MaxNameLength is the longest queue name, routing key or topic pattern, in
// bytes, that AMQP 0-9-1 (a short string) and RabbitMQ accept.
const MaxNameLength = 255

// ValidateQueueName reports whether name can name a queue: 1 to 255 bytes of
// valid UTF-8, not starting with "amq." (RabbitMQ reserves that prefix and
// refuses to declare such a queue). The error wraps [ErrInvalidName].
func ValidateQueueName(name string) error {
	switch {
	case name == "":
		return &NameError{Kind: "queue name", Name: name, Reason: "must not be empty"}
	case len(name) > MaxNameLength:
		return &NameError{Kind: "queue name", Name: name, Reason: "longer than 255 bytes"}
	case !utf8.ValidString(name):
		return &NameError{Kind: "queue name", Name: name, Reason: "not valid UTF-8"}
	case strings.HasPrefix(name, "amq."):
		return &NameError{Kind: "queue name", Name: name, Reason: `the prefix "amq." is reserved by RabbitMQ`}
	}
	return nil
}

// ValidateExchangeName reports whether name can name a topic exchange other
// than a transport's own ([ExchangeBinder]): 1 to 255 bytes of valid UTF-8.
// Names starting with "amq." are allowed: they are RabbitMQ's predeclared
// exchanges (amq.topic is where tomodachi services publish), used as found.
// The error wraps [ErrInvalidName].
func ValidateExchangeName(name string) error {
	switch {
	case name == "":
		return &NameError{Kind: "exchange name", Name: name, Reason: "must not be empty (the default exchange cannot be bound)"}
	case len(name) > MaxNameLength:
		return &NameError{Kind: "exchange name", Name: name, Reason: "longer than 255 bytes"}
	case !utf8.ValidString(name):
		return &NameError{Kind: "exchange name", Name: name, Reason: "not valid UTF-8"}
	}
	return nil
}

// ValidateRoutingKey reports whether key can be used as a routing key: at most
// 255 bytes of valid UTF-8. The empty key is valid (on a topic exchange it is
// the key of zero words). The error wraps [ErrInvalidName].
func ValidateRoutingKey(key string) error {
	switch {
	case len(key) > MaxNameLength:
		return &NameError{Kind: "routing key", Name: key, Reason: "longer than 255 bytes"}
	case !utf8.ValidString(key):
		return &NameError{Kind: "routing key", Name: key, Reason: "not valid UTF-8"}
	}
	return nil
}

// ValidateTopicPattern reports whether pattern can bind a queue to the topic
// exchange: at most 255 bytes of valid UTF-8. Any such string is a valid
// pattern; its meaning is RabbitMQ's:
//
//   - a pattern and a routing key are lists of words separated by "."; the
//     empty string is the list of zero words, and otherwise empty words count
//     ("a." is the two words "a" and "");
//   - the word "*" matches exactly one word, the word "#" matches zero or
//     more words, anywhere in the pattern; any other word matches itself,
//     byte for byte and case-sensitively ("a*" is an ordinary word);
//   - so "#" matches every key including ""; "*" does not match ""; "a.*"
//     matches "a." but not "a"; "a.#" matches "a"; "a.#.b" matches "a.b" and
//     "a.x.y.b" but not "a.b.c"; "*.*" matches "."; the empty pattern matches
//     only the empty key.
//
// The error wraps [ErrInvalidName].
func ValidateTopicPattern(pattern string) error {
	switch {
	case len(pattern) > MaxNameLength:
		return &NameError{Kind: "topic pattern", Name: pattern, Reason: "longer than 255 bytes"}
	case !utf8.ValidString(pattern):
		return &NameError{Kind: "topic pattern", Name: pattern, Reason: "not valid UTF-8"}
	}
	return nil
}
