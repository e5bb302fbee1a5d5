package bus

import (
	"encoding/hex"
	"time"

	"github.com/google/uuid"

	"github.com/busline/busline/middleware"
)

// idLen is the length of a message id.
const idLen = 36

// NewMessageID returns a new message id, a version 7 UUID such as
// "019ae3c4-5b7d-7c1e-9f2a-6d8b0e1c7a53": the form of the id the Bus gives
// every message it sends. Its first 48 bits are the time in milliseconds,
// so ids sort roughly by creation time and index well as database keys (the
// outbox's tables are keyed by message id); the other 74 bits are random.
// Ids made in the same stretch of time share their first characters: to
// shorten one for display, keep its end. PikaBus writes version 1 UUIDs;
// any unique string is valid on the wire. To know the id of a message you
// send, choose it: b.Send(ctx, queue, msg, WithMessageID(NewMessageID())).
func NewMessageID() string {
	var s [idLen]byte
	putID(&s)
	return string(s[:])
}

// putID writes a new message id into s.
func putID(s *[idLen]byte) {
	// NewV7 fails only if the system's random source does, as
	// crypto/rand.Read, which it reads, no longer can (Go 1.24).
	u := uuid.Must(uuid.NewV7())
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
}

// maxTimeLen is the longest TimeSent text of a year from 0 to 9999, in
// any middleware.TimeFormat.
const maxTimeLen = len("2006-01-02T15:04:05.000000+00:00")

// newIDAndTime returns a new message id and the TimeSent text of now, and
// the same two as header values. The two texts share one allocation; each
// header value is a second one, as any conversion of a string to an
// interface is.
func newIDAndTime(now time.Time, f middleware.TimeFormat) (id string, idBox, timeBox any) {
	var buf [idLen + maxTimeLen]byte
	putID((*[idLen]byte)(buf[:idLen]))
	s := string(f.AppendFormat(buf[:idLen], now))
	id = s[:idLen]
	return id, id, s[idLen:]
}
