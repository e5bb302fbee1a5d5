package bus

import (
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"time"
	"unsafe"

	"github.com/busline/busline/middleware"
)

const hexDigits = "0123456789abcdef"

// idLen is the length of a message id.
const idLen = 36

// NewMessageID returns a new message id, a random (version 4) UUID such as
// "3f0c9a4e-5b7d-4c1e-9f2a-6d8b0e1c7a53": the form of the id the Bus gives
// every message it sends (PikaBus writes version 1 UUIDs; any unique string
// is valid on the wire). To know the id of a message you send, choose it:
// b.Send(ctx, queue, msg, WithMessageID(NewMessageID())).
func NewMessageID() string {
	var s [idLen]byte
	putID(&s)
	return string(s[:])
}

// putID writes a new message id into s. Its 122 random bits come from the
// runtime's per-thread ChaCha8 generator (math/rand/v2), which the
// operating system seeds: unique across processes, with no system call, no
// lock and no allocation, and every character independent of the previous
// id's, so that a shortened id still tells messages apart. (A random
// prefix per process and a counter, as before, made the first half of
// every id the same.)
func putID(s *[idLen]byte) {
	var u [16]byte
	binary.BigEndian.PutUint64(u[:8], rand.Uint64())
	binary.BigEndian.PutUint64(u[8:], rand.Uint64())
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	j := 0
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			s[j] = '-'
			j++
		}
		s[j], s[j+1] = hexDigits[c>>4], hexDigits[c&0x0f]
		j += 2
	}
}

// newIDAndTime returns a new message id and the TimeSent text of now, and
// the same two boxed as header values, in two allocations instead of four:
// both strings share one buffer, never modified once written, and both
// boxes one array, whose elements reflect hands out without copying them
// (the array is not addressable).
func newIDAndTime(now time.Time, f middleware.TimeFormat) (id string, idBox, timeBox any) {
	buf := make([]byte, idLen, idLen+len("2006-01-02T15:04:05.000000+00:00"))
	putID((*[idLen]byte)(buf))
	buf = f.AppendFormat(buf, now)
	s := unsafe.String(unsafe.SliceData(buf), len(buf))
	v := reflect.ValueOf([2]string{s[:idLen], s[idLen:]})
	return s[:idLen], v.Index(0).Interface(), v.Index(1).Interface()
}
