package middleware

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// DefaultHeaderPrefix is the prefix of every standard header name, PikaBus's.
const DefaultHeaderPrefix = "PikaBus"

// TraceParentHeader is the W3C Trace Context header, carried unprefixed.
const TraceParentHeader = "traceparent"

// HeaderNames are the names of the standard headers, each the prefix, a dot
// and the PikaBus name (with the default prefix: "PikaBus.MessageId" and so
// on). Make them with [NewHeaderNames]; [DefaultHeaderNames] is PikaBus's.
type HeaderNames struct {
	// MessageID: the message's id, also in the AMQP message_id property.
	MessageID string
	// CorrelationID: inherited from the message being handled, else new.
	CorrelationID string
	// ConversationID: busline's addition, the id of the first message of a
	// chain of messages; inherited like CorrelationID.
	ConversationID string
	// TimeSent: when the message was sent (see [FormatTime]).
	TimeSent string
	// ReplyToAddress: the queue replies go to.
	ReplyToAddress string
	// OriginatingAddress: the queue of the endpoint that sent the message.
	OriginatingAddress string
	// Intent: "command" for Send, Reply and Defer; "event" for Publish.
	Intent string
	// MessageType: the message's type name, which chooses its handler.
	MessageType string
	// ContentType: how the body is encoded, such as "application/json".
	ContentType string
	// ContentEncoding: the body's character set, such as "utf-8".
	ContentEncoding string
	// ErrorDetails: on a failed message, the error that failed it.
	ErrorDetails string
	// SourceQueue: on a failed message, the queue it failed in.
	SourceQueue string
	// ErrorRetries: how many delayed retries the message has had, an AMQP
	// integer. busline writes an int32; PikaBus 2 writes a short-short
	// (int8: pamqp encodes a small Python int so), PikaBus 1.x what pika
	// picks for the value. It is read with [HeaderInt], in every integer
	// width, signed or not (int8 to int64, uint8 to uint32), and from a
	// whole float or a decimal string, so that none of them restarts the
	// count. On the error queue it is that number plus one, the failed
	// deliveries, as PikaBus writes it.
	ErrorRetries string
	// DeferredTime: the time a deferred message is due (see [FormatTime]).
	DeferredTime string
}

// NewHeaderNames returns the standard header names under prefix.
func NewHeaderNames(prefix string) HeaderNames {
	p := prefix + "."
	return HeaderNames{
		MessageID:          p + "MessageId",
		CorrelationID:      p + "CorrelationId",
		ConversationID:     p + "ConversationId",
		TimeSent:           p + "TimeSent",
		ReplyToAddress:     p + "ReplyToAddress",
		OriginatingAddress: p + "OriginatingAddress",
		Intent:             p + "Intent",
		MessageType:        p + "MessageType",
		ContentType:        p + "ContentType",
		ContentEncoding:    p + "ContentEncoding",
		ErrorDetails:       p + "ErrorDetails",
		SourceQueue:        p + "SourceQueue",
		ErrorRetries:       p + "ErrorRetries",
		DeferredTime:       p + "DeferredTime",
	}
}

// DefaultHeaderNames are the header names PikaBus uses.
var DefaultHeaderNames = NewHeaderNames(DefaultHeaderPrefix)

// The values of the Intent header.
const (
	IntentCommand = "command"
	IntentEvent   = "event"
)

// timeLayout is RFC 3339 with microseconds and a numeric offset, always
// "+00:00" since times are written in UTC: exactly what Python's
// datetime.isoformat() writes for an aware UTC time, as PikaBus 2 does, and
// what datetime.fromisoformat reads back on every Python 3 version (a "Z"
// suffix needs 3.11).
const timeLayout = "2006-01-02T15:04:05.000000-07:00"

// pikaBus1Layout is PikaBus 1.x's '%m/%d/%Y %H:%M:%S', naive UTC.
const pikaBus1Layout = "01/02/2006 15:04:05"

// FormatTime formats t as busline writes times into headers by default: RFC
// 3339 in UTC with microseconds, such as "2026-11-22T09:30:00.000000+00:00"
// (see [TimeRFC3339]).
func FormatTime(t time.Time) string {
	var buf [len(timeLayout)]byte
	return string(TimeRFC3339.AppendFormat(buf[:0], t))
}

// TimeFormat chooses how times (TimeSent, DeferredTime) are written into
// headers. Every format is read back by [ParseTime].
type TimeFormat uint8

const (
	// TimeRFC3339 is the default: RFC 3339 in UTC with microseconds and a
	// "+00:00" offset, as PikaBus 2 writes and reads.
	TimeRFC3339 TimeFormat = iota
	// TimePikaBus1 is PikaBus 1.x's '%m/%d/%Y %H:%M:%S' in UTC, for peers
	// that still run PikaBus 1.x, which reads nothing else. It has whole
	// seconds only: a time is written truncated to the second.
	TimePikaBus1
)

// Format formats t in f.
func (f TimeFormat) Format(t time.Time) string {
	var buf [len(timeLayout)]byte
	return string(f.AppendFormat(buf[:0], t))
}

// AppendFormat is like Format but appends the text to b, for callers that
// build several strings in one buffer.
func (f TimeFormat) AppendFormat(b []byte, t time.Time) []byte {
	// Every message sent carries a time: writing the digits directly is
	// several times faster than interpreting the layout, with the same
	// text (years outside 0-9999, which time writes its own way, take the
	// general path).
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		if f == TimePikaBus1 {
			return t.AppendFormat(b, pikaBus1Layout)
		}
		return t.AppendFormat(b, timeLayout)
	}
	hour, minute, sec := t.Clock()
	if f == TimePikaBus1 {
		b = append2(b, int(month))
		b = append(b, '/')
		b = append2(b, day)
		b = append(b, '/')
		b = append4(b, year)
		b = append(b, ' ')
		b = append2(b, hour)
		b = append(b, ':')
		b = append2(b, minute)
		b = append(b, ':')
		return append2(b, sec)
	}
	b = append4(b, year)
	b = append(b, '-')
	b = append2(b, int(month))
	b = append(b, '-')
	b = append2(b, day)
	b = append(b, 'T')
	b = append2(b, hour)
	b = append(b, ':')
	b = append2(b, minute)
	b = append(b, ':')
	b = append2(b, sec)
	b = append(b, '.')
	us := t.Nanosecond() / 1000
	b = append2(b, us/10000)
	b = append2(b, us/100%100)
	b = append2(b, us%100)
	return append(b, "+00:00"...)
}

// append2 appends n, 0 to 99, as two digits.
func append2(b []byte, n int) []byte {
	return append(b, byte('0'+n/10), byte('0'+n%10))
}

// append4 appends n, 0 to 9999, as four digits.
func append4(b []byte, n int) []byte {
	return append2(append2(b, n/100), n%100)
}

// TimeFormatOf reports the form of a time header value v, such as a
// message's TimeSent: [TimePikaBus1] for PikaBus 1.x's
// '%m/%d/%Y %H:%M:%S', [TimeRFC3339] for any other form [ParseTime]
// reads (what PikaBus 2 and busline write), and false for a value that is
// no time. Package bus uses it to write a reply in the form its requester
// reads, and the [Retry] stage to keep a PikaBus 1.x message's copies in
// that form.
func TimeFormatOf(v any) (TimeFormat, bool) {
	s, ok := HeaderString(v)
	if !ok {
		return 0, false
	}
	s = strings.TrimSpace(s)
	if len(s) == len(pikaBus1Layout) && s[2] == '/' {
		if _, err := time.Parse(pikaBus1Layout, s); err == nil {
			return TimePikaBus1, true
		}
		return 0, false
	}
	if _, err := ParseTime(s); err == nil {
		return TimeRFC3339, true
	}
	return 0, false
}

func (f TimeFormat) String() string {
	switch f {
	case TimeRFC3339:
		return "RFC 3339"
	case TimePikaBus1:
		return "PikaBus 1.x"
	}
	return fmt.Sprintf("TimeFormat(%d)", uint8(f))
}

// ParseTime reads a time header as written by busline, by PikaBus 2 (ISO
// 8601, with or without an offset; without one it is UTC) or by PikaBus 1.x
// ('%m/%d/%Y %H:%M:%S', UTC). The result is in UTC.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range [...]string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999", pikaBus1Layout} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("cannot read time %q: want RFC 3339 or PikaBus 1.x's MM/DD/YYYY HH:MM:SS", s)
}

// HeaderTime reads a time header value: a string for [ParseTime], or an AMQP
// timestamp. ok is false when the value is absent; err says why a present
// value cannot be read.
func HeaderTime(v any) (t time.Time, ok bool, err error) {
	switch v := v.(type) {
	case nil:
		return time.Time{}, false, nil
	case time.Time:
		return v.UTC(), true, nil
	case string:
		t, err := ParseTime(v)
		return t, err == nil, err
	case []byte:
		t, err := ParseTime(string(v))
		return t, err == nil, err
	}
	return time.Time{}, false, fmt.Errorf("cannot read a time from a header of type %T", v)
}

// HeaderInt reads an integer header value, whatever its AMQP integer width,
// or a decimal string (as some clients write counters). ok is false when the
// value is absent; err says why a present value cannot be read.
func HeaderInt(v any) (n int64, ok bool, err error) {
	switch v := v.(type) {
	case nil:
		return 0, false, nil
	case int8:
		return int64(v), true, nil
	case uint8:
		return int64(v), true, nil
	case int16:
		return int64(v), true, nil
	case uint16:
		return int64(v), true, nil
	case int32:
		return int64(v), true, nil
	case uint32:
		return int64(v), true, nil
	case int64:
		return v, true, nil
	case int:
		return int64(v), true, nil
	case uint64:
		if v > math.MaxInt64 {
			return 0, false, fmt.Errorf("integer header %d out of range", v)
		}
		return int64(v), true, nil
	case float64:
		if v != math.Trunc(v) || math.Abs(v) > 1<<53 {
			return 0, false, fmt.Errorf("header %v is not a whole number", v)
		}
		return int64(v), true, nil
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("cannot read an integer from header %q", v)
		}
		return n, true, nil
	case []byte:
		return HeaderInt(string(v))
	}
	return 0, false, fmt.Errorf("cannot read an integer from a header of type %T", v)
}

// HeaderString reads a string header value (AMQP long strings may also
// arrive as bytes). ok is false when the value is absent or not a string.
func HeaderString(v any) (s string, ok bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case []byte:
		return string(v), true
	}
	return "", false
}
