package cgo

import (
	"sync"
	"testing"
)

// TestRunTask: multi-thread tasks from many goroutines all run on the
// compute thread, one-thread tasks on their caller.
func TestRunTask(t *testing.T) {
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			threads := 1 + i%2
			if on := taskOnComputeThread(threads); on != (threads > 1) {
				t.Errorf("a task of %d threads ran on the compute thread: %v, want %v", threads, on, threads > 1)
			}
		}()
	}
	wg.Wait()
}

func BenchmarkRunTask(b *testing.B) {
	for b.Loop() {
		taskOnComputeThread(2)
	}
}
