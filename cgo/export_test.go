package cgo

// ForceDeviceLock turns the device lock on or off for a test (as a
// registered GPU device would) and returns what restores it.
func ForceDeviceLock(on bool) (restore func()) {
	old := devLock.on.Load()
	devLock.on.Store(on)
	return func() { devLock.on.Store(old) }
}
