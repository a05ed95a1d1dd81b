package profile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// errWouldBlock: another process holds the lock.
var errWouldBlock = errors.New("held by another process")

// lockTimeout bounds the wait for another process's lock: appends hold it
// for one write, so a longer wait means a stuck process.
const lockTimeout = 30 * time.Second

// lockPath is the lock file of a profile: a hidden file beside it. The
// profile itself cannot carry the lock, since a JSON array profile is
// replaced (renamed over) by every append.
func lockPath(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".lock")
}

// lockProfile takes the lock of the profile at path (already resolved):
// exclusive for writers, which create the lock file, shared for readers,
// which only use one that exists (unlock is then a no-op). It returns the
// function that releases the lock.
func lockProfile(path string, shared bool) (unlock func(), err error) {
	lp := lockPath(path)
	var f *os.File
	if shared {
		f, err = os.Open(lp)
		if errors.Is(err, os.ErrNotExist) {
			return func() {}, nil
		}
	} else {
		f, err = os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o666)
	}
	if err != nil {
		return nil, fmt.Errorf("lock file %s: %w", lp, err)
	}
	deadline := time.Now().Add(lockTimeout)
	wait := time.Millisecond
	for {
		err := flock(f, shared, false)
		if err == nil {
			return func() {
				_ = funlock(f)
				f.Close()
			}, nil
		}
		if err != errWouldBlock || time.Now().After(deadline) {
			f.Close()
			if err == errWouldBlock {
				err = fmt.Errorf("%w for more than %s", err, lockTimeout)
			}
			return nil, fmt.Errorf("lock file %s: %w", lp, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 20*time.Millisecond)
	}
}
