//go:build unix

package brokertest

import (
	"errors"
	"os"
	"syscall"
)

// tryLock takes an flock on f without waiting; ok is false if another
// process holds a conflicting one.
func tryLock(f *os.File, exclusive bool) (ok bool, err error) {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	err = syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}
