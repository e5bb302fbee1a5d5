package bus

import (
	"crypto/rand"
	"encoding/binary"
	"reflect"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/busline/busline/middleware"
)

// Message ids look like random (version 4) UUIDs, which is what PikaBus's
// peers and tools expect to see, but are made from a random per-process
// prefix and a counter: unique, and cheap enough for the hot path (one
// allocation, no system call).
var (
	idPrefix  [8]byte
	idCounter atomic.Uint64
)

func init() {
	var seed [16]byte
	_, _ = rand.Read(seed[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	copy(idPrefix[:], seed[:8])
	idCounter.Store(binary.BigEndian.Uint64(seed[8:]))
	idPrefix[6] = idPrefix[6]&0x0f | 0x40 // version 4
}

const hexDigits = "0123456789abcdef"

// idLen is the length of a message id.
const idLen = 36

// newID returns a new message id, "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".
func newID() string {
	var s [idLen]byte
	putID(&s)
	return string(s[:])
}

// putID writes a new message id into s.
func putID(s *[idLen]byte) {
	var u [16]byte
	copy(u[:8], idPrefix[:])
	binary.BigEndian.PutUint64(u[8:], idCounter.Add(1))
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
