//go:build (linux || darwin) && (amd64 || arm64)

package kernels

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"runtime"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// abiVersion is the PPLUG_KERNELS_ABI_VERSION of kernels/include/pplug_kernels.h
// this package speaks.
const abiVersion = 2

// nativeLib is one loaded kernel library (pplug_kernels.h). Libraries stay
// loaded for the life of the process (unloading CUDA runtimes is unsafe).
type nativeLib struct {
	path string

	abiVersion        func() uint32
	backendName       func() string
	statusString      func(status int32) string
	deviceCount       func(count *int32, err *byte, errLen uintptr) int32
	ctxCreate         func(device int32, out *uintptr, err *byte, errLen uintptr) int32
	ctxDestroy        func(ctx uintptr)
	ctxLastError      func(ctx uintptr) string
	ctxDeviceName     func(ctx uintptr, buf *byte, n uintptr) int32
	projectorCreate   func(ctx uintptr, dIn, dOut int32, w1, b1, w2, b2 *float32, scale float32, out *uintptr) int32
	projectorFree     func(ctx uintptr, p uintptr) int32
	project           func(ctx uintptr, p uintptr, in *float32, n int64, out *float32) int32
	aggregate         func(ctx uintptr, nUsers int32, offsets *int32, queries, keys, values *float32, dKey, dVal int32, tau float32, out, weights *float32) int32
	residentUpload    func(ctx uintptr, keys, values *float32, n, dKey, dVal int32, out *uintptr) int32
	residentFree      func(ctx uintptr, r uintptr) int32
	residentAggregate func(ctx uintptr, users *uintptr, nUsers int32, queries *float32, tau float32, out, weights *float32) int32
}

var (
	libsMu sync.Mutex
	libs   = map[string]*nativeLib{}
)

// loadLib dlopens path and binds every symbol of the ABI; any failure is an
// error naming the path (and the symbol or the dlerror text).
func loadLib(path string) (*nativeLib, error) {
	libsMu.Lock()
	defer libsMu.Unlock()
	if l, ok := libs[path]; ok {
		return l, nil
	}
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, fmt.Errorf("kernels: dlopen %s: %v", path, err)
	}
	l := &nativeLib{path: path}
	syms := []struct {
		name string
		fn   any
	}{
		{"pplug_abi_version", &l.abiVersion},
		{"pplug_backend_name", &l.backendName},
		{"pplug_status_string", &l.statusString},
		{"pplug_device_count", &l.deviceCount},
		{"pplug_ctx_create", &l.ctxCreate},
		{"pplug_ctx_destroy", &l.ctxDestroy},
		{"pplug_ctx_last_error", &l.ctxLastError},
		{"pplug_ctx_device_name", &l.ctxDeviceName},
		{"pplug_projector_create", &l.projectorCreate},
		{"pplug_projector_free", &l.projectorFree},
		{"pplug_project", &l.project},
		{"pplug_aggregate", &l.aggregate},
		{"pplug_resident_upload", &l.residentUpload},
		{"pplug_resident_free", &l.residentFree},
		{"pplug_resident_aggregate", &l.residentAggregate},
	}
	for _, s := range syms {
		sym, err := purego.Dlsym(h, s.name)
		if err != nil || sym == 0 {
			_ = purego.Dlclose(h)
			return nil, fmt.Errorf("kernels: %s is not a pplug kernel library: symbol %s missing (%v)", path, s.name, err)
		}
		purego.RegisterFunc(s.fn, sym)
	}
	if v := l.abiVersion(); v != abiVersion {
		_ = purego.Dlclose(h)
		return nil, fmt.Errorf("kernels: %s speaks pplug kernel ABI %d, this program needs %d (rebuild it with `make gpu`)", path, v, abiVersion)
	}
	libs[path] = l
	return l, nil
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// openNative loads the library of backend ("cuda"/"metal") and opens a
// context on device index.
func openNative(backend string, index int, opts Options, log *slog.Logger) (Backend, error) {
	if gpu := platformGPU(); gpu != backend {
		return nil, fmt.Errorf("kernels: %s backend is not available on %s", backend, platformName())
	}
	path, err := findLibrary(backend, opts)
	if err != nil {
		return nil, err
	}
	log.Debug("kernels: loading GPU library", "backend", backend, "path", path)
	l, err := loadLib(path)
	if err != nil {
		return nil, err
	}
	if name := l.backendName(); name != backend {
		return nil, fmt.Errorf("kernels: %s implements backend %q, want %q", path, name, backend)
	}
	errBuf := make([]byte, 1024)
	var count int32
	if st := l.deviceCount(&count, &errBuf[0], uintptr(len(errBuf))); st != 0 {
		return nil, fmt.Errorf("kernels: %s backend (%s): no usable device: %s (%s)", backend, path, cString(errBuf), l.statusString(st))
	}
	if count == 0 {
		return nil, fmt.Errorf("kernels: %s backend (%s): no device found", backend, path)
	}
	if index >= int(count) {
		return nil, fmt.Errorf("kernels: %s backend (%s): device %d requested, %d present", backend, path, index, count)
	}
	var ctx uintptr
	if st := l.ctxCreate(int32(index), &ctx, &errBuf[0], uintptr(len(errBuf))); st != 0 || ctx == 0 {
		return nil, fmt.Errorf("kernels: %s backend (%s): device %d: %s (%s)", backend, path, index, cString(errBuf), l.statusString(st))
	}
	nameBuf := make([]byte, 256)
	if st := l.ctxDeviceName(ctx, &nameBuf[0], uintptr(len(nameBuf))); st != 0 || cString(nameBuf) == "" {
		msg := l.ctxLastError(ctx)
		l.ctxDestroy(ctx)
		return nil, fmt.Errorf("kernels: %s backend (%s): device %d reports no name: %s", backend, path, index, msg)
	}
	threads := opts.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	return &nativeBackend{
		lib: l, kind: backend, ctx: ctx, device: cString(nameBuf), threads: threads,
		residents: map[*nativeResident]struct{}{}, seed: maphash.MakeSeed(),
	}, nil
}

// nativeBackend drives one context of a kernel library. A mutex serialises
// the calls (a context is single-threaded by the ABI).
type nativeBackend struct {
	lib     *nativeLib
	kind    string
	device  string
	threads int
	seed    maphash.Seed

	mu        sync.Mutex
	ctx       uintptr // 0 once closed
	residents map[*nativeResident]struct{}
	projs     []cachedProjector // most recently used first
}

// cachedProjector is a projector already on the device, found again by the
// hash of the weights' contents.
type cachedProjector struct {
	sum    uint64
	handle uintptr
}

// maxCachedProjectors bounds the device copies of projector weights kept.
const maxCachedProjectors = 2

func (b *nativeBackend) Name() string   { return b.kind }
func (b *nativeBackend) Device() string { return b.device }

// libraryPath is the file the backend was loaded from.
func (b *nativeBackend) libraryPath() string { return b.lib.path }

func (b *nativeBackend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ctx == 0 {
		return nil
	}
	b.lib.ctxDestroy(b.ctx) // frees projectors and residents too
	b.ctx = 0
	for r := range b.residents {
		r.handle = 0
	}
	clear(b.residents)
	b.projs = nil
	return nil
}

// fail turns a status into an error carrying the context's message. b.mu is held.
func (b *nativeBackend) fail(op string, st int32) error {
	return fmt.Errorf("kernels: %s %s: %s (%s)", b.kind, op, b.lib.ctxLastError(b.ctx), b.lib.statusString(st))
}

func f32p(s []float32) *float32 {
	if len(s) == 0 {
		return nil
	}
	return &s[0]
}

func (b *nativeBackend) Project(p *Projector, in []float32, n int, out []float32) error {
	if err := checkProject(p, in, n, out); err != nil {
		return err
	}
	if n == 0 {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.ctx == 0 {
			return ErrClosed
		}
		return nil
	}
	sum := projectorSum(b.seed, b.threads, p) // outside the lock: host work
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ctx == 0 {
		return ErrClosed
	}
	h, err := b.projectorHandle(p, sum)
	if err != nil {
		return err
	}
	st := b.lib.project(b.ctx, h, f32p(in), int64(n), f32p(out))
	runtime.KeepAlive(in)
	runtime.KeepAlive(out)
	if st != 0 {
		return b.fail("Project", st)
	}
	return nil
}

// projectorHandle returns the device copy of p's weights, uploading them if
// no cached copy has the same contents. b.mu is held.
func (b *nativeBackend) projectorHandle(p *Projector, sum uint64) (uintptr, error) {
	for i, c := range b.projs {
		if c.sum == sum {
			copy(b.projs[1:i+1], b.projs[:i])
			b.projs[0] = c
			return c.handle, nil
		}
	}
	var h uintptr
	st := b.lib.projectorCreate(b.ctx, int32(p.DIn), int32(p.DOut), f32p(p.W1), f32p(p.B1), f32p(p.W2), f32p(p.B2), p.Scale, &h)
	runtime.KeepAlive(p)
	if st != 0 || h == 0 {
		return 0, b.fail("Project (uploading the weights)", st)
	}
	if len(b.projs) == maxCachedProjectors {
		old := b.projs[len(b.projs)-1]
		b.projs = b.projs[:len(b.projs)-1]
		if st := b.lib.projectorFree(b.ctx, old.handle); st != 0 {
			b.lib.projectorFree(b.ctx, h)
			return 0, b.fail("Project (freeing old weights)", st)
		}
	}
	b.projs = append([]cachedProjector{{sum, h}}, b.projs...)
	return h, nil
}

// projectorSum hashes p's shape, scale and weights (in parallel chunks).
func projectorSum(seed maphash.Seed, threads int, p *Projector) uint64 {
	parts := [][]float32{p.W1, p.B1, p.W2, p.B2}
	const chunk = 1 << 20 // floats per hashed piece
	type piece struct{ part, lo, hi int }
	var pieces []piece
	for i, s := range parts {
		for lo := 0; lo < len(s); lo += chunk {
			pieces = append(pieces, piece{i, lo, min(lo+chunk, len(s))})
		}
	}
	sums := make([]uint64, len(pieces))
	work := func(i int) {
		pc := pieces[i]
		s := parts[pc.part][pc.lo:pc.hi]
		sums[i] = maphash.Bytes(seed, unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*4))
	}
	(&cpuBackend{threads: threads}).parallel(len(pieces), work)
	var h maphash.Hash
	h.SetSeed(seed)
	var buf [8]byte
	for _, v := range []uint64{uint64(p.DIn), uint64(p.DOut), uint64(math.Float32bits(p.Scale))} {
		binary.LittleEndian.PutUint64(buf[:], v)
		h.Write(buf[:])
	}
	for _, s := range sums {
		binary.LittleEndian.PutUint64(buf[:], s)
		h.Write(buf[:])
	}
	return h.Sum64()
}

// nativeResident is one user's keys and values on the device.
type nativeResident struct {
	owner     *nativeBackend
	handle    uintptr // 0 once freed (guarded by owner.mu)
	n, dk, dv int
}

func (r *nativeResident) Len() int                  { return r.n }
func (r *nativeResident) dims() (n, dKey, dVal int) { return r.n, r.dk, r.dv }

func (r *nativeResident) Close() error {
	b := r.owner
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.handle == 0 {
		return nil
	}
	h := r.handle
	r.handle = 0
	delete(b.residents, r)
	if b.ctx == 0 {
		return nil
	}
	if st := b.lib.residentFree(b.ctx, h); st != 0 {
		return b.fail("Resident.Close", st)
	}
	return nil
}

func (b *nativeBackend) Upload(keys, values []float32, n, dKey, dVal int) (Resident, error) {
	if err := checkUpload(keys, values, n, dKey, dVal); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ctx == 0 {
		return nil, ErrClosed
	}
	var h uintptr
	st := b.lib.residentUpload(b.ctx, f32p(keys), f32p(values), int32(n), int32(dKey), int32(dVal), &h)
	runtime.KeepAlive(keys)
	runtime.KeepAlive(values)
	if st != 0 || h == 0 {
		return nil, b.fail("Upload", st)
	}
	r := &nativeResident{owner: b, handle: h, n: n, dk: dKey, dv: dVal}
	b.residents[r] = struct{}{}
	return r, nil
}

func (b *nativeBackend) Aggregate(users []Resident, queries []float32, tau float32, out []float32, weights []float32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ctx == 0 {
		return ErrClosed
	}
	handles := make([]uintptr, len(users))
	shapes := make([]residentShape, len(users))
	for i, u := range users {
		r, ok := u.(*nativeResident)
		if !ok || r == nil {
			return fmt.Errorf("kernels: Aggregate: users[%d] (%T) was not made by this %s backend", i, u, b.kind)
		}
		if r.owner != b {
			return fmt.Errorf("kernels: Aggregate: users[%d] belongs to another %s backend", i, r.owner.kind)
		}
		if r.handle == 0 {
			return fmt.Errorf("kernels: Aggregate: users[%d] is a closed Resident: %w", i, ErrClosed)
		}
		handles[i], shapes[i] = r.handle, r
	}
	if _, _, _, err := checkAggregate(shapes, queries, tau, out, weights); err != nil {
		return err
	}
	if len(users) == 0 {
		return nil
	}
	st := b.lib.residentAggregate(b.ctx, &handles[0], int32(len(handles)), f32p(queries), tau, f32p(out), f32p(weights))
	runtime.KeepAlive(handles)
	runtime.KeepAlive(queries)
	runtime.KeepAlive(out)
	runtime.KeepAlive(weights)
	if st != 0 {
		return b.fail("Aggregate", st)
	}
	return nil
}

// aggregateHost runs the stateless pplug_aggregate (host arrays in, host
// arrays out); the tests use it to check that entry point against the oracle.
func (b *nativeBackend) aggregateHost(offsets []int32, queries, keys, values []float32, dKey, dVal int, tau float32, out, weights []float32) error {
	if len(offsets) == 0 {
		return errors.New("kernels: aggregateHost: empty offsets")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ctx == 0 {
		return ErrClosed
	}
	nUsers := len(offsets) - 1
	total := int(offsets[nUsers])
	if len(queries) != nUsers*dKey || len(keys) != total*dKey || len(values) != total*dVal || len(out) != nUsers*dVal ||
		(weights != nil && len(weights) != total) {
		return errors.New("kernels: aggregateHost: size mismatch")
	}
	st := b.lib.aggregate(b.ctx, int32(nUsers), &offsets[0], f32p(queries), f32p(keys), f32p(values), int32(dKey), int32(dVal), tau, f32p(out), f32p(weights))
	runtime.KeepAlive(offsets)
	runtime.KeepAlive(queries)
	runtime.KeepAlive(keys)
	runtime.KeepAlive(values)
	runtime.KeepAlive(out)
	runtime.KeepAlive(weights)
	if st != 0 {
		return b.fail("aggregate", st)
	}
	return nil
}
