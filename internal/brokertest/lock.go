package brokertest

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The node `make test` starts is shared by the test binaries of every
// package, which `go test ./...` runs at the same time. Tests that disrupt
// it (Control) hold an exclusive lock on a file in its directory from their
// first Control call to their end; tests of other packages that need a
// steady broker hold it shared (Shared). Within one process the lock is
// counted, so that parallel tests and subtests share it.

// lockWait bounds the wait for the lock.
const lockWait = 5 * time.Minute

var locks struct {
	mu    sync.Mutex
	f     *os.File
	n     int
	kind  lockKind
	owner map[testing.TB]bool // tests holding the lock, once each
}

type lockKind int

const (
	shared lockKind = iota
	exclusive
)

// Shared holds the broker steady for the rest of t: a test of another
// package that restarts the node, or raises an alarm, waits until t ends, and
// t waits until such a test has ended. It does nothing when the node was
// not started by scripts/rabbitmq.sh.
func Shared(t testing.TB) {
	t.Helper()
	lock(t, shared)
}

func lock(t testing.TB, kind lockKind) {
	t.Helper()
	dir := os.Getenv("BUSLINE_RABBITMQ_DIR")
	if dir == "" {
		return
	}
	locks.mu.Lock()
	defer locks.mu.Unlock()
	if locks.owner[t] {
		return
	}
	if locks.n > 0 && locks.kind != kind {
		t.Fatalf("brokertest: one test binary both disrupts the broker and asks for it steady")
	}
	if locks.n == 0 {
		f, err := os.OpenFile(filepath.Join(dir, "tests.lock"), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatalf("brokertest: %v", err)
		}
		deadline := time.Now().Add(lockWait)
		for {
			ok, err := tryLock(f, kind == exclusive)
			if err != nil {
				f.Close()
				t.Fatalf("brokertest: locking %s: %v", f.Name(), err)
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				f.Close()
				t.Fatalf("brokertest: the broker was not free within %v (another package's test holds %s)", lockWait, f.Name())
			}
			time.Sleep(100 * time.Millisecond)
		}
		locks.f, locks.kind = f, kind
		if locks.owner == nil {
			locks.owner = map[testing.TB]bool{}
		}
	}
	locks.n++
	locks.owner[t] = true
	t.Cleanup(func() {
		locks.mu.Lock()
		defer locks.mu.Unlock()
		delete(locks.owner, t)
		locks.n--
		if locks.n == 0 {
			if locks.kind == exclusive {
				heal(t)
			}
			locks.f.Close() // releases the lock
			locks.f = nil
		}
	})
}
