package amqp

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/transport"
)

// RedactURL returns rawURL with its password replaced by "xxxxx", for logs
// and errors. A URL that cannot be parsed is replaced whole, since the
// password could be anywhere in it.
func RedactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "<invalid URL>"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	return u.String()
}

// secrets is the set of strings (passwords and userinfo of the configured
// URLs) that must never appear in an error message or a log line.
type secrets []string

func newSecrets(urls []string) secrets {
	var s secrets
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil || u.User == nil {
			continue
		}
		if p, ok := u.User.Password(); ok && p != "" {
			s = append(s, p, url.QueryEscape(p), url.PathEscape(p))
		}
	}
	return s
}

func (s secrets) scrub(msg string) string {
	for _, p := range s {
		if p != "" && strings.Contains(msg, p) {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
	}
	return msg
}

// scrubbedError hides secrets in its message and keeps the cause reachable
// for errors.Is and errors.As.
type scrubbedError struct {
	msg   string
	cause error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.cause }

// wrap returns err with every secret removed from its message.
func (s secrets) wrap(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := s.scrub(msg)
	if clean == msg {
		return err
	}
	return &scrubbedError{msg: clean, cause: err}
}

var inequivalentArg = regexp.MustCompile(`inequivalent arg '([^']*)'`)

// classify wraps an error of amqp091 in the transport sentinel that matches
// it, keeping the original reachable. op names the operation and its
// subject, such as `declare queue "orders"`.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var aerr *amqp091.Error
	if errors.As(err, &aerr) {
		switch aerr.Code {
		case amqp091.NotFound:
			return fmt.Errorf("%s: %w: %w", op, transport.ErrNotFound, err)
		case amqp091.PreconditionFailed:
			if m := inequivalentArg.FindStringSubmatch(aerr.Reason); m != nil {
				return fmt.Errorf("%s: %w: argument %q differs from the existing one's: %w",
					op, transport.ErrTopologyConflict, m[1], err)
			}
		case amqp091.ResourceLocked:
			return fmt.Errorf("%s: %w: the queue is exclusive to another connection: %w",
				op, transport.ErrTopologyConflict, err)
		}
		if !aerr.Server || aerr.Code == amqp091.ConnectionForced || aerr.Code == amqp091.FrameError {
			return fmt.Errorf("%s: %w: %w", op, transport.ErrConnectionLost, err)
		}
		return fmt.Errorf("%s: %w", op, err)
	}
	if errors.Is(err, amqp091.ErrClosed) {
		return fmt.Errorf("%s: %w: %w", op, transport.ErrConnectionLost, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// isChannelError reports whether err closed the channel it happened on (an
// AMQP channel exception such as 404 or 406), so the channel must be
// replaced.
func isChannelError(err error) bool {
	var aerr *amqp091.Error
	return errors.As(err, &aerr) || errors.Is(err, amqp091.ErrClosed)
}
