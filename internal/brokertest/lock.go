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
// first Control call to their end; every other test that uses it (URL,
// Shared) holds it shared. Within one process the lock is counted, so that
// parallel tests and subtests share it; a test that disrupts the broker
// waits until the other tests of its own binary that use it have ended, and
// its subtests share its exclusive hold.

// lockWait bounds the wait for the lock.
const lockWait = 5 * time.Minute

var locks struct {
	mu    sync.Mutex
	f     *os.File
	kind  lockKind
	owner map[testing.TB]bool // tests holding the lock, once each
}

type lockKind int

const (
	shared lockKind = iota
	exclusive
)

// Shared holds the broker steady for the rest of t: a test that restarts
// the node, or raises an alarm, waits until t ends, and t waits until such a
// test has ended. [URL] does it already. It does nothing when the node was
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
		if kind == shared || locks.kind == exclusive {
			return
		}
		// t asked for the broker steady (URL) and now disrupts it: it
		// gives up its shared hold and waits for the exclusive one.
		unlock(t)
	}
	deadline := time.Now().Add(lockWait)
	for {
		switch {
		case len(locks.owner) == 0:
			acquire(t, dir, kind, deadline)
		case kind == shared || locks.kind == exclusive:
			// Another test of this binary holds it: share its hold (the
			// subtests of a test that disrupts the broker are part of it).
		default:
			// A test that disrupts the broker waits for the tests of its
			// own binary that need it steady.
			if time.Now().After(deadline) {
				t.Fatalf("brokertest: %d other tests of this binary still use the broker after %v", len(locks.owner), lockWait)
			}
			locks.mu.Unlock()
			time.Sleep(50 * time.Millisecond)
			locks.mu.Lock()
			continue
		}
		break
	}
	if locks.owner == nil {
		locks.owner = map[testing.TB]bool{}
	}
	locks.owner[t] = true
	t.Cleanup(func() {
		locks.mu.Lock()
		defer locks.mu.Unlock()
		if locks.owner[t] {
			unlock(t)
		}
	})
}

// acquire takes the file lock of kind for this process, waiting for other
// processes until deadline. locks.mu is held, and nobody in this process
// holds the lock.
func acquire(t testing.TB, dir string, kind lockKind, deadline time.Time) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "tests.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("brokertest: %v", err)
	}
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
}

// unlock ends t's hold; the last one out heals the node if it was held
// exclusively, and releases the file lock. locks.mu is held.
func unlock(t testing.TB) {
	delete(locks.owner, t)
	if len(locks.owner) > 0 {
		return
	}
	if locks.kind == exclusive {
		heal(t)
	}
	locks.f.Close() // releases the lock
	locks.f = nil
}
