package cgo

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"unsafe"
)

// The compute thread: every ggml computation of the process that uses more
// than one CPU thread (llama_decode and llama_encode, the plain C loop, the
// plug-in graph, the training graph) runs on one C thread (compute.c),
// whichever goroutine asks for it. One-thread computations run on the
// caller.
//
// Why one thread: with OpenMP (llama.cpp's default build, and the Makefile's
// where the compiler has it) the OpenMP runtime keeps a pool of workers for
// each thread that starts a parallel region, and Go runs a cgo call on
// whatever thread its goroutine is on. A process soon held several pools,
// more OpenMP threads than CPUs, and libgomp then cuts its spinning at
// barriers to a hundred iterations: a single-token decode of a
// qwen2-0.5B-shaped model ran at 0.66x llama.cpp's speed on 2 cores. With
// one calling thread there is one pool, as in llama.cpp's tools.
//
// Why a C thread: the caller waits for the task's byte on a pipe, parked in
// Go's network poller, instead of in a cgo call. A goroutine in a cgo call
// longer than 10 ms loses its P to the runtime's monitor, which then wakes
// every 20 us or so for a while: on 2 cores each wake-up took a core from
// the computation (tg32 at 0.95x the same loop in C).
//
// Computations of different contexts are serialized; on shared CPU cores
// that is what they would get anyway.

var computeThread struct {
	once sync.Once
	err  error
	mu   sync.Mutex // one task at a time
	done *os.File   // read end: one byte per finished task
	w    *os.File   // write end, kept open for the thread
}

func startComputeThread() {
	r, w, err := os.Pipe()
	if err != nil {
		computeThread.err = fmt.Errorf("the compute thread's pipe: %w", err)
		return
	}
	// Fd puts w in blocking mode, which suits the C thread's write.
	if rc := C.pp_compute_start(C.int(w.Fd())); rc != 0 {
		r.Close()
		w.Close()
		computeThread.err = fmt.Errorf("starting the compute thread: errno %d", int(rc))
		return
	}
	computeThread.done, computeThread.w = r, w
}

// RunTask runs the C function fn (a pp_task_fn, as C.f gives it) with arg on the compute
// thread when the computation uses more than one CPU thread (threads > 1),
// else on the caller, and returns when it has run. arg, and every Go
// pointer it holds, must be pinned (runtime.Pinner) for the call. Without a
// compute thread (it could not start) every task runs on the caller.
func RunTask(fn, arg unsafe.Pointer, threads int) {
	if threads > 1 {
		computeThread.once.Do(startComputeThread)
	}
	if threads <= 1 || computeThread.err != nil {
		C.pp_task_call(C.pp_task_fn(fn), arg)
		return
	}
	computeThread.mu.Lock()
	defer computeThread.mu.Unlock()
	C.pp_compute_submit(C.pp_task_fn(fn), arg)
	var b [1]byte
	if _, err := computeThread.done.Read(b[:]); err != nil {
		// The pipe is the process's own; going on would leave the task's
		// memory in use by the thread.
		panic(fmt.Sprintf("the compute thread's pipe: %v", err))
	}
}

// taskOnComputeThread runs a task of threads CPU threads and reports
// whether it ran on the compute thread (for tests).
func taskOnComputeThread(threads int) bool {
	on := new(C.bool)
	var pin runtime.Pinner
	pin.Pin(on)
	defer pin.Unpin()
	RunTask(C.pp_probe_task_run, unsafe.Pointer(on), threads)
	return bool(*on)
}

// pinAll pins the first element of each non-empty slice.
func pinAll[T any](p *runtime.Pinner, slices ...[]T) {
	for _, s := range slices {
		if len(s) > 0 {
			p.Pin(&s[0])
		}
	}
}
