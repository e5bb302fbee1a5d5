package bus

import (
	"encoding/binary"
	"math/rand/v2"
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

// maxTimeLen is the longest TimeSent text of a year from 0 to 9999, in
// any middleware.TimeFormat.
const maxTimeLen = len("2006-01-02T15:04:05.000000+00:00")

// idTime holds a message id and its TimeSent text, and the two string
// headers that the header values of both point to.
type idTime struct {
	strs [2]string
	buf  [idLen + maxTimeLen]byte
}

// newIDAndTime returns a new message id and the TimeSent text of now, and
// the same two boxed as header values, in one allocation instead of four:
// both texts and both string headers live in one idTime, never modified
// once written.
func newIDAndTime(now time.Time, f middleware.TimeFormat) (id string, idBox, timeBox any) {
	p := new(idTime)
	putID((*[idLen]byte)(p.buf[:idLen]))
	buf := f.AppendFormat(p.buf[:idLen], now)
	if len(buf) > len(p.buf) || &buf[0] != &p.buf[0] {
		// A time longer than any of years 0-9999: AppendFormat moved the
		// text to a larger array of its own.
		s := string(buf)
		return s[:idLen], s[:idLen], s[idLen:]
	}
	p.strs[0] = unsafe.String(&p.buf[0], idLen)
	p.strs[1] = unsafe.String(&p.buf[idLen], len(buf)-idLen)
	return p.strs[0], stringBox(&p.strs[0]), stringBox(&p.strs[1])
}

// eface is the layout of an interface value without methods: its dynamic
// type, and a pointer to its value (a string is always held through one).
type eface struct {
	typ  unsafe.Pointer
	data unsafe.Pointer
}

// stringBox returns the string *s as an interface value that points to *s
// itself, instead of to a copy made by converting *s to an interface (an
// allocation). *s must never change afterwards.
func stringBox(s *string) any {
	if !sharedBoxes {
		return *s
	}
	v := any("") // the type word of a string, and no allocation
	(*eface)(unsafe.Pointer(&v)).data = unsafe.Pointer(s)
	return v
}

// sharedBoxes reports that interface values have the layout stringBox
// relies on. Were it otherwise, the probe's type word would have been
// overwritten and the type assertion would fail (it only compares the type
// word), and stringBox converts instead.
var sharedBoxes = func() bool {
	probe := new(string)
	*probe = "probe"
	v := any("")
	(*eface)(unsafe.Pointer(&v)).data = unsafe.Pointer(probe)
	s, ok := v.(string)
	return ok && s == "probe"
}()
