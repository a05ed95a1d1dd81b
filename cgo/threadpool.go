package cgo

/*
#include <stdlib.h>
#include "ggml.h"
#include "ggml-cpu.h"
#include "llama.h"
*/
import "C"

import (
	"errors"
	"sync"
)

// ThreadPoolParams are the settings of the persistent CPU threadpools a
// context owns (ggml_threadpool_params; llama-bench's --poll and --prio).
type ThreadPoolParams struct {
	// Poll is how long a waiting worker spins before it sleeps, 0 (sleep at
	// once) to 100; a negative value keeps ggml's default (50).
	Poll int
	// Prio is the workers' scheduling priority: 0 normal (ggml's default),
	// -1 low, 1 medium, 2 high, 3 realtime.
	Prio int
}

// threadPools are a context's two CPU threadpools, one for single-token
// decodes and one for prompt batches (the same pool when the counts match).
// Without them ggml's CPU backend starts and joins a new set of worker
// threads on every graph it computes, which under CPU contention costs more
// than the computation (llama.cpp's tools attach pools, or use OpenMP).
type threadPools struct {
	gen, batch *C.struct_ggml_threadpool
	n, nBatch  int
	params     ThreadPoolParams
}

// newThreadPools creates the pools for n generation and nBatch prompt threads.
func newThreadPools(n, nBatch int, p ThreadPoolParams) (threadPools, error) {
	tp := threadPools{n: n, nBatch: nBatch, params: p}
	tp.gen = newThreadPool(n, p)
	if tp.gen == nil {
		return tp, errors.New("ggml_threadpool_new failed")
	}
	tp.batch = tp.gen
	if nBatch != n {
		tp.batch = newThreadPool(nBatch, p)
		if tp.batch == nil {
			tp.free()
			return threadPools{}, errors.New("ggml_threadpool_new failed")
		}
	}
	return tp, nil
}

// idlePools keeps the pools of freed contexts for the next context of the
// same settings: a program that opens and closes contexts (a test loop, an
// encoder per request) then reuses worker threads instead of starting and
// joining new ones each time, which left the C heap a little larger after
// every cycle. A pool serves one context at a time.
var idlePools = struct {
	sync.Mutex
	m map[poolKey][]*C.struct_ggml_threadpool
}{m: map[poolKey][]*C.struct_ggml_threadpool{}}

// maxIdlePools bounds the pools kept per setting.
const maxIdlePools = 4

type poolKey struct {
	n int
	p ThreadPoolParams
}

func newThreadPool(n int, p ThreadPoolParams) *C.struct_ggml_threadpool {
	k := poolKey{n, p}
	idlePools.Lock()
	if l := idlePools.m[k]; len(l) > 0 {
		tp := l[len(l)-1]
		idlePools.m[k] = l[:len(l)-1]
		idlePools.Unlock()
		return tp
	}
	idlePools.Unlock()
	params := C.ggml_threadpool_params_default(C.int(n))
	if p.Poll >= 0 {
		params.poll = C.uint32_t(min(p.Poll, 100))
	}
	params.prio = C.enum_ggml_sched_priority(p.Prio)
	return C.ggml_threadpool_new(&params)
}

// free gives the pools back (kept for the next context, or freed); the
// context must no longer use them.
func (tp *threadPools) free() {
	if tp.batch != nil && tp.batch != tp.gen {
		releasePool(tp.batch, tp.nBatch, tp.params)
	}
	if tp.gen != nil {
		releasePool(tp.gen, tp.n, tp.params)
	}
	*tp = threadPools{}
}

func releasePool(pool *C.struct_ggml_threadpool, n int, p ThreadPoolParams) {
	k := poolKey{n, p}
	idlePools.Lock()
	defer idlePools.Unlock()
	if len(idlePools.m[k]) < maxIdlePools {
		idlePools.m[k] = append(idlePools.m[k], pool)
		return
	}
	C.ggml_threadpool_free(pool)
}

// attachThreadPools gives c pools of n and nBatch threads, replacing (and
// freeing) the ones it had.
func (c *Context) attachThreadPools(n, nBatch int) error {
	tp, err := newThreadPools(n, nBatch, c.tpParams)
	if err != nil {
		return err
	}
	C.llama_attach_threadpool(c.c, tp.gen, tp.batch)
	old := c.pools
	c.pools = tp
	old.free()
	return nil
}
