package bus

import (
	"crypto/rand"
	"encoding/binary"
	"sync/atomic"
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

// newID returns a new message id, "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".
func newID() string {
	var u [16]byte
	copy(u[:8], idPrefix[:])
	binary.BigEndian.PutUint64(u[8:], idCounter.Add(1))
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	var s [36]byte
	j := 0
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			s[j] = '-'
			j++
		}
		s[j], s[j+1] = hexDigits[c>>4], hexDigits[c&0x0f]
		j += 2
	}
	return string(s[:])
}
