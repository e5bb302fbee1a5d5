package bus

import (
	"sync"
	"sync/atomic"
	"time"
)

// The pace at which the Bus gives back a message whose failure it could not
// deal with (a retry copy or an error-queue copy that could not be
// dispatched, or any other error the pipeline returned): it holds the
// delivery for holdInitial before the first nack, then twice as long each
// time the same message comes back, up to holdMax. A message not seen
// again for holdForget starts over.
const (
	holdInitial = time.Second
	holdMax     = time.Minute
	holdForget  = 2 * holdMax
	// holdEntries bounds the messages remembered; past it the oldest are
	// forgotten (they start over at holdInitial).
	holdEntries = 4096
)

// holds remembers, per message, how many times in a row it was given back
// after a failure the pipeline could not deal with.
type holds struct {
	n  atomic.Int32 // len(m), read without the lock on the ack path
	mu sync.Mutex
	m  map[string]holdState
}

type holdState struct {
	times int       // nacks in a row
	until time.Time // when the last hold ends
}

// next returns how long to hold the message key before its nack, and how
// many times in a row (this one included) it is held.
func (h *holds) next(key string, now time.Time) (time.Duration, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = make(map[string]holdState)
	}
	st := h.m[key]
	if !st.until.IsZero() && now.Sub(st.until) > holdForget {
		st.times = 0
	}
	st.times++
	d := holdInitial
	for i := 1; i < st.times && d < holdMax; i++ {
		d *= 2
	}
	d = min(d, holdMax)
	st.until = now.Add(d)
	if _, ok := h.m[key]; !ok && len(h.m) >= holdEntries {
		h.evictLocked(now)
	}
	h.m[key] = st
	h.n.Store(int32(len(h.m)))
	return d, st.times
}

// evictLocked forgets the messages not seen for holdForget, or if none,
// an arbitrary quarter of them.
func (h *holds) evictLocked(now time.Time) {
	for k, st := range h.m {
		if now.Sub(st.until) > holdForget {
			delete(h.m, k)
		}
	}
	for k := range h.m {
		if len(h.m) < holdEntries*3/4 {
			break
		}
		delete(h.m, k)
	}
}

// forget drops key after its message was settled for good.
func (h *holds) forget(key string) {
	if h.n.Load() == 0 {
		return
	}
	h.mu.Lock()
	delete(h.m, key)
	h.n.Store(int32(len(h.m)))
	h.mu.Unlock()
}
