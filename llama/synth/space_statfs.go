//go:build linux || darwin || freebsd

package synth

import "syscall"

// freeSpace is the space an unprivileged user may fill in dir's file
// system; ok is false when it cannot be read.
func freeSpace(dir string) (free uint64, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return uint64(st.Bavail) * uint64(st.Bsize), true
}
