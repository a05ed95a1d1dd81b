package llama

import (
	"context"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// TestDecodesShareOneOpenMPPool: contexts decoding from many OS threads do
// not each get their own OpenMP workers. OpenMP keeps a pool of workers per
// thread that starts a parallel region; once a process had more of them
// than CPUs, libgomp stopped spinning at barriers and single-token decode
// ran at 0.66x llama.cpp's speed. Every multi-thread computation now runs on
// one thread (cgo.RunTask), so the callers' threads add no workers.
func TestDecodesShareOneOpenMPPool(t *testing.T) {
	if !strings.Contains(SystemInfo(), "OPENMP = 1") {
		t.Skip("ggml built without OpenMP (make builds it with OpenMP where the compiler has it)")
	}
	m := loadStories(t)
	toks, err := m.Tokenize("Once upon a time", true, false)
	if err != nil {
		t.Fatal(err)
	}
	const callers = 10
	ctxs := make([]*Context, callers)
	for i := range ctxs {
		ctxs[i] = newCtx(t, m, ContextOptions{NCtx: 64, Threads: 2})
	}
	before := osThreads(t)
	var ready sync.WaitGroup
	release := make(chan struct{})
	errs := make(chan error, callers)
	for _, c := range ctxs {
		ready.Add(1)
		go func() {
			// Never unlocked: the thread stays this goroutine's until it
			// ends, and ends with it.
			runtime.LockOSThread()
			_, err := c.DecodeInputs(context.Background(), []Input{TokenInput(toks...)}, DecodeOptions{})
			errs <- err
			ready.Done()
			<-release
		}()
	}
	ready.Wait()
	grown := osThreads(t) - before
	close(release)
	for range callers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Each caller holds a thread (callers), plus the compute thread and its
	// one OpenMP worker, plus a few threads the Go runtime may start. One
	// pool per caller would add another callers workers.
	if grown > callers+4 {
		t.Fatalf("%d callers on their own threads grew the process by %d threads, want at most %d (one OpenMP pool)", callers, grown, callers+4)
	}
}

// osThreads counts the process's threads.
func osThreads(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Skipf("cannot count threads: %v", err)
	}
	return len(es)
}
