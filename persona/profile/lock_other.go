//go:build !unix

package profile

import (
	"errors"
	"os"
)

// flock is not available here: every lock attempt fails, so that appends
// are refused rather than racing with another process.
func flock(*os.File, bool, bool) error {
	return errors.New("profile locking is not supported on this system")
}

func funlock(*os.File) error { return nil }
