package amqp

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/transport"
)

// RedactURL returns rawURL with its password replaced by "xxxxx", for logs
// and errors. It works on any string, parsable or not: when url.Parse
// rejects rawURL (a bad port, a bad %-escape, an unescaped '#' or '/' in the
// password), or finds no userinfo although the text has an '@', everything
// between the scheme's "://" (or the start) and the last '@' is treated as
// userinfo and replaced whole, since where the password ends cannot be
// known: "amqp://user:p#w@host:x/" gives "amqp://xxxxx@host:x/".
func RedactURL(rawURL string) string {
	start, at, hasInfo := userinfoSpan(rawURL)
	u, err := url.Parse(rawURL)
	switch {
	case err == nil && u.User != nil && u.Opaque == "" && hasInfo && rawURL[start:at] == u.User.String():
		// url.Parse saw the userinfo where the text has it.
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		return u.String()
	case hasInfo:
		return rawURL[:start] + "xxxxx" + rawURL[at:]
	case err != nil:
		// No '@': no userinfo to hide. The text has no secret.
		return rawURL
	}
	return u.String()
}

// userinfoSpan returns where the userinfo of raw may lie: from after the
// first "://" (or the first ':' if there is none, or the start) to the last
// '@'. It reports false when raw has no '@' after that start.
func userinfoSpan(raw string) (start, at int, ok bool) {
	if i := strings.Index(raw, "://"); i >= 0 {
		start = i + len("://")
	} else if i := strings.IndexByte(raw, ':'); i >= 0 {
		start = i + 1
	}
	at = strings.LastIndexByte(raw, '@')
	if at < start {
		return 0, 0, false
	}
	return start, at, true
}

// secrets is the set of strings (passwords and userinfo of the configured
// URLs, in the forms an error may show them) that must never appear in an
// error message or a log line.
type secrets []string

func newSecrets(urls []string) secrets {
	var s secrets
	add := func(p string) {
		if p == "" {
			return
		}
		s = append(s, p, url.QueryEscape(p), url.PathEscape(p))
		// %q in url.Error and strconv errors escapes quotes, backslashes
		// and bytes that are not printable.
		if q := strconv.Quote(p); q[1:len(q)-1] != p {
			s = append(s, q[1:len(q)-1])
		}
		if u, err := url.PathUnescape(p); err == nil && u != p {
			s = append(s, u)
		}
	}
	for _, raw := range urls {
		if u, err := url.Parse(raw); err == nil && u.User != nil {
			if p, ok := u.User.Password(); ok {
				add(p)
			}
		}
		// Whatever url.Parse made of it, the text between "://" and the
		// last '@' is secret, and so is what follows its first ':'.
		if start, at, ok := userinfoSpan(raw); ok {
			info := raw[start:at]
			if i := strings.IndexByte(info, ':'); i >= 0 {
				add(info[i+1:])
			}
			add(info)
		}
	}
	// Longest first, so that a password that contains another is replaced
	// whole.
	slices.SortFunc(s, func(a, b string) int { return len(b) - len(a) })
	return slices.Compact(s)
}

// quoted matches a Go-quoted string, as url.Error and strconv errors quote
// the text they reject.
var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// checkURLs parses urls as Dial will, and says which one is wrong and why
// without showing any part of a password.
func checkURLs(urls []string) error {
	for _, u := range urls {
		if _, err := amqp091.ParseURI(u); err != nil {
			msg := fmt.Sprintf("amqp: Dial: URL %s: %s", RedactURL(u), urlError(err))
			return errors.New(newSecrets(urls).scrub(msg))
		}
	}
	return nil
}

// urlError describes why a URL was refused without quoting any part of it:
// url.Parse quotes the URL, or the bad escape or port, which may be part of
// the password.
func urlError(err error) string {
	var ue *url.Error
	hint := ""
	if errors.As(err, &ue) {
		err = ue.Err
		hint = " (a reserved character such as ?, #, @, : or / in the user name or password must be percent-encoded)"
	}
	return quoted.ReplaceAllString(err.Error(), "(…)") + hint
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

// invalidArg matches RabbitMQ's refusal of a queue argument: a value out of
// range or of the wrong type, or (group 2) an argument the queue type does
// not take ("... of queue type rabbit_quorum_queue").
var invalidArg = regexp.MustCompile(`invalid arg '([^']*)'.*?( of queue type \w+)?$`)

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
			if m := invalidArg.FindStringSubmatch(aerr.Reason); m != nil {
				if m[2] != "" {
					return fmt.Errorf("%s: %w: argument %q is refused by this queue type: %w",
						op, transport.ErrNotSupported, m[1], err)
				}
				return fmt.Errorf("%s: %w: argument %q has a value RabbitMQ refuses: %w",
					op, transport.ErrInvalidMessage, m[1], err)
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
