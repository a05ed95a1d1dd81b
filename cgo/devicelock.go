package cgo

/*
#include "ggml-backend.h"
*/
import "C"

import (
	"sync"
	"sync/atomic"
)

// The device lock: once a GPU device is registered (a loaded CUDA, Vulkan
// or Metal backend), every call of this package that may use a device
// (loading and freeing models, contexts and plug-in graphs, decoding,
// reading logits and embeddings, the KV cache's operations, sampling, the
// training graph) holds one process-wide lock, so that no two threads use
// a GPU backend at once. llama.cpp's own server drives every context from
// one thread.
//
// Why: ggml's Vulkan backend has not been safe for concurrent use of one
// device from several threads (llama.cpp issues 7575 and 11371). pplug
// serve does that: the batch decode, a persona's history encoding (its KV
// clear, a buffer memset) and the plug-in graph's uploads ran at once on
// Vulkan0 (gdb). On lavapipe, 40 runs of serve with three users at once
// crashed 2 times without the lock (SIGSEGV, SIGABRT) and 0 times with it.
// The lock serves every GPU backend rather than trusting each one's thread
// safety: on CUDA and Metal the computations were already serialised on
// the compute thread whenever a context has more than one CPU thread.
//
// Without a GPU device the lock is off and costs one atomic load.
//
// The lock is never held across a call into another locked function, so
// it does not nest; the compute thread's lock is taken inside it, never
// the other way round.
var devLock struct {
	on atomic.Bool
	mu sync.Mutex
}

// noteDevices turns the device lock on when a GPU device is registered.
func noteDevices() {
	for i := range int(C.ggml_backend_dev_count()) {
		switch C.ggml_backend_dev_type(C.ggml_backend_dev_get(C.size_t(i))) {
		case C.GGML_BACKEND_DEVICE_TYPE_GPU, C.GGML_BACKEND_DEVICE_TYPE_IGPU:
			devLock.on.Store(true)
			return
		}
	}
}

// LockDevices takes the device lock when it is on and reports whether it
// did; hand the result to UnlockDevices. For callers of ggml outside this
// package (the training graph).
func LockDevices() bool {
	if !devLock.on.Load() {
		return false
	}
	devLock.mu.Lock()
	return true
}

// UnlockDevices releases what LockDevices took.
func UnlockDevices(held bool) {
	if held {
		devLock.mu.Unlock()
	}
}

// DeviceLockOn reports whether device calls are serialised (a GPU device
// is registered).
func DeviceLockOn() bool { return devLock.on.Load() }
