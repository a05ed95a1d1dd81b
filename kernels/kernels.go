// Package kernels is the plug-in's numeric work behind one interface: the
// projector MLP and the input-aware aggregation (the weighted pooling of a
// user's history) of Persona-Plug (see PAPER.md, "Architecture"). The
// encoder's token pooling is not here: llama.cpp does it inside the
// encoder's own graph, on the model's device.
//
// Three implementations share the [Backend] interface:
//
//   - "cpu": pure Go, always available; the fallback and the test oracle.
//   - "cuda": libpplug_kernels_cuda.so (kernels/cuda, CUDA + cuBLAS).
//   - "metal": libpplug_kernels_metal.dylib (kernels/metal).
//
// The GPU libraries implement the C ABI of kernels/include/pplug_kernels.h
// and are loaded at run time with purego, so this package never needs cgo.
// [Open] picks one; see its documentation for the search rules.
package kernels

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
)

// Projector is the plug-in's projector, applied to every history item:
//
//	Proj(x) = Scale * (W2 · GELU(W1 · x + B1) + B2)
//
// with the exact (erf) GELU of PyTorch's nn.GELU. Weights use the layout of
// PyTorch's nn.Linear.weight.
type Projector struct {
	DIn, DOut int
	W1        []float32 // [DOut][DIn] row-major
	B1        []float32 // [DOut]
	W2        []float32 // [DOut][DOut] row-major
	B2        []float32 // [DOut]
	Scale     float32
}

// Validate checks dimensions, slice lengths and Scale.
func (p *Projector) Validate() error {
	if p == nil {
		return errors.New("kernels: nil Projector")
	}
	if p.DIn <= 0 || p.DOut <= 0 || p.DIn > maxDim || p.DOut > maxDim {
		return fmt.Errorf("kernels: Projector dims DIn=%d DOut=%d out of range [1, %d]", p.DIn, p.DOut, maxDim)
	}
	check := func(name string, got, want int) error {
		if got != want {
			return fmt.Errorf("kernels: Projector.%s has %d values, want %d (DIn=%d, DOut=%d)", name, got, want, p.DIn, p.DOut)
		}
		return nil
	}
	if err := check("W1", len(p.W1), p.DOut*p.DIn); err != nil {
		return err
	}
	if err := check("B1", len(p.B1), p.DOut); err != nil {
		return err
	}
	if err := check("W2", len(p.W2), p.DOut*p.DOut); err != nil {
		return err
	}
	if err := check("B2", len(p.B2), p.DOut); err != nil {
		return err
	}
	if s := float64(p.Scale); math.IsNaN(s) || math.IsInf(s, 0) {
		return fmt.Errorf("kernels: Projector.Scale = %v", p.Scale)
	}
	return nil
}

// Resident is one user's keys and projected values kept by a backend (on the
// device for GPU backends) between queries. It belongs to the backend that
// made it. Close frees it; Close is idempotent.
type Resident interface {
	Len() int // number of items
	Close() error
}

// Backend runs the plug-in's kernels. All methods are safe for concurrent use,
// validate their arguments (returning an error, never panicking) and are
// synchronous: outputs are written when they return and no input slice is
// kept (Upload copies).
type Backend interface {
	Name() string   // "cpu", "cuda", "metal"
	Device() string // human-readable device, e.g. "NVIDIA H100 80GB HBM3" or "cpu (2 threads)"

	// Project applies p to in [n][DIn], writing out [n][DOut]. GPU backends
	// keep a device copy of the weights and re-upload it when the weights
	// change (detected by a hash of their contents).
	Project(p *Projector, in []float32, n int, out []float32) error

	// Upload copies one user's keys [n][dKey] (unit vectors, e.g. pooled
	// embeddings) and values [n][dVal] (projected items) into the backend.
	// n may be 0: such a user aggregates to a zero row.
	Upload(keys, values []float32, n, dKey, dVal int) (Resident, error)

	// Aggregate computes, for each user b with query q_b:
	//	w_i = softmax_i(cos(q_b, k_i) / tau) over the user's own items,
	//	out_b = sum_i w_i v_i.
	// queries [len(users)][dKey]; out [len(users)][dVal]; weights, if
	// non-nil, [sum of users' Len()] receives the weights user after user.
	// All users must have the same dKey and dVal; tau must be finite and > 0.
	// Keys and queries are L2-normalised before the dot product (for unit
	// vectors this is the plain dot product of the paper).
	Aggregate(users []Resident, queries []float32, tau float32, out []float32, weights []float32) error

	// Close releases the backend and every Resident it still holds. It is
	// idempotent; other methods fail after it.
	Close() error
}

// Options configures Open.
type Options struct {
	// LibDir is searched first for the GPU library.
	LibDir string
	// Threads bounds the CPU backend's goroutines (and the GPU backends'
	// host-side work); <= 0 means runtime.GOMAXPROCS(0).
	Threads int
	// Logger receives the device choice (Info) and the reasons (Debug);
	// nil means slog.Default().
	Logger *slog.Logger
}

// ErrClosed is returned by methods of a closed Backend or Resident.
var ErrClosed = errors.New("kernels: closed")

// maxDim bounds every vector width (the C ABI uses int32 sizes).
const maxDim = 1 << 22

// Open returns a backend for device:
//
//   - "cpu": the pure Go backend.
//   - "cuda" (Linux), "metal" (macOS): the GPU library, or an error that
//     names what is missing (the file and the folders searched, or the
//     dlopen / driver error). "cuda:N" selects CUDA device N.
//   - "auto" or "": the GPU library of the platform when it is found and
//     reports a device, else "cpu".
//
// The library (libpplug_kernels_cuda.so / libpplug_kernels_metal.dylib) is
// searched in: opts.LibDir, $PPLUG_KERNELS_DIR, the executable's folder,
// <executable folder>/../lib/pplug.
func Open(device string, opts Options) (Backend, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	dev := strings.ToLower(strings.TrimSpace(device))
	if dev == "" {
		dev = "auto"
	}
	name, index, err := parseDevice(dev)
	if err != nil {
		return nil, err
	}
	switch name {
	case "cpu":
		b := newCPU(opts.Threads)
		log.Info("kernels: using cpu backend", "device", b.Device())
		return b, nil
	case "cuda", "metal":
		b, err := openNative(name, index, opts, log)
		if err != nil {
			return nil, err
		}
		logChoice(log, b)
		return b, nil
	case "auto":
		gpu := platformGPU()
		if gpu == "" {
			log.Debug("kernels: no GPU backend on this platform", "platform", platformName())
		} else {
			b, err := openNative(gpu, index, opts, log)
			if err == nil {
				logChoice(log, b)
				return b, nil
			}
			log.Debug("kernels: "+gpu+" backend unavailable, falling back to cpu", "reason", err.Error())
		}
		b := newCPU(opts.Threads)
		log.Info("kernels: using cpu backend", "device", b.Device())
		return b, nil
	}
	return nil, unknownDevice(device)
}

// CheckDevice reports whether Open understands device (auto, cpu, cuda,
// metal, cuda:N, ...), without opening anything: the check a command line
// makes before it loads a model.
func CheckDevice(device string) error {
	dev := strings.ToLower(strings.TrimSpace(device))
	if dev == "" {
		return nil
	}
	name, _, err := parseDevice(dev)
	if err != nil {
		return err
	}
	switch name {
	case "auto", "cpu", "cuda", "metal":
		return nil
	}
	return unknownDevice(device)
}

func unknownDevice(device string) error {
	return fmt.Errorf("kernels: unknown device %q (want auto, cpu, cuda or metal)", device)
}

func logChoice(log *slog.Logger, b Backend) {
	attrs := []any{"device", b.Device()}
	if lp, ok := b.(interface{ libraryPath() string }); ok {
		attrs = append(attrs, "library", lp.libraryPath())
	}
	log.Info("kernels: using "+b.Name()+" backend", attrs...)
}

// parseDevice splits "cuda:1" into ("cuda", 1).
func parseDevice(dev string) (string, int, error) {
	name, idx, found := strings.Cut(dev, ":")
	if !found {
		return name, 0, nil
	}
	if name != "cuda" && name != "metal" && name != "auto" {
		return "", 0, fmt.Errorf("kernels: device %q: only cuda, metal and auto take an index", dev)
	}
	n := 0
	if idx == "" {
		return "", 0, fmt.Errorf("kernels: device %q: missing index after ':'", dev)
	}
	for _, c := range idx {
		if c < '0' || c > '9' || n > 1<<20 {
			return "", 0, fmt.Errorf("kernels: device %q: bad index %q", dev, idx)
		}
		n = n*10 + int(c-'0')
	}
	return name, n, nil
}

// ---------------------------------------------------------------------------
// argument checks shared by the backends
// ---------------------------------------------------------------------------

func checkProject(p *Projector, in []float32, n int, out []float32) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if n < 0 {
		return fmt.Errorf("kernels: Project: n = %d", n)
	}
	if int64(len(in)) != int64(n)*int64(p.DIn) {
		return fmt.Errorf("kernels: Project: len(in) = %d, want n*DIn = %d*%d = %d", len(in), n, p.DIn, int64(n)*int64(p.DIn))
	}
	if int64(len(out)) != int64(n)*int64(p.DOut) {
		return fmt.Errorf("kernels: Project: len(out) = %d, want n*DOut = %d*%d = %d", len(out), n, p.DOut, int64(n)*int64(p.DOut))
	}
	return nil
}

func checkUpload(keys, values []float32, n, dKey, dVal int) error {
	if n < 0 || n > math.MaxInt32 {
		return fmt.Errorf("kernels: Upload: n = %d", n)
	}
	if dKey <= 0 || dKey > maxDim || dVal <= 0 || dVal > maxDim {
		return fmt.Errorf("kernels: Upload: dKey = %d, dVal = %d out of range [1, %d]", dKey, dVal, maxDim)
	}
	if int64(len(keys)) != int64(n)*int64(dKey) {
		return fmt.Errorf("kernels: Upload: len(keys) = %d, want n*dKey = %d*%d = %d", len(keys), n, dKey, int64(n)*int64(dKey))
	}
	if int64(len(values)) != int64(n)*int64(dVal) {
		return fmt.Errorf("kernels: Upload: len(values) = %d, want n*dVal = %d*%d = %d", len(values), n, dVal, int64(n)*int64(dVal))
	}
	return nil
}

func checkTau(tau float32) error {
	if t := float64(tau); !(t > 0) || math.IsInf(t, 0) {
		return fmt.Errorf("kernels: Aggregate: tau = %v, want finite > 0", tau)
	}
	return nil
}

// residentShape is what Aggregate needs to know about each user.
type residentShape interface {
	Resident
	dims() (n, dKey, dVal int)
}

// checkAggregate validates the call against the users' shapes (already
// type-checked by the backend) and returns dKey, dVal and the total item count.
func checkAggregate(users []residentShape, queries []float32, tau float32, out, weights []float32) (dKey, dVal, total int, err error) {
	if err := checkTau(tau); err != nil {
		return 0, 0, 0, err
	}
	for i, u := range users {
		n, dk, dv := u.dims()
		if i == 0 {
			dKey, dVal = dk, dv
		} else if dk != dKey || dv != dVal {
			return 0, 0, 0, fmt.Errorf("kernels: Aggregate: users[%d] has dKey=%d dVal=%d, users[0] has dKey=%d dVal=%d", i, dk, dv, dKey, dVal)
		}
		total += n
	}
	b := len(users)
	if len(queries) != b*dKey {
		return 0, 0, 0, fmt.Errorf("kernels: Aggregate: len(queries) = %d, want len(users)*dKey = %d*%d = %d", len(queries), b, dKey, b*dKey)
	}
	if len(out) != b*dVal {
		return 0, 0, 0, fmt.Errorf("kernels: Aggregate: len(out) = %d, want len(users)*dVal = %d*%d = %d", len(out), b, dVal, b*dVal)
	}
	if weights != nil && len(weights) != total {
		return 0, 0, 0, fmt.Errorf("kernels: Aggregate: len(weights) = %d, want the users' item count %d", len(weights), total)
	}
	if total > math.MaxInt32 {
		return 0, 0, 0, fmt.Errorf("kernels: Aggregate: %d items in one call, at most %d", total, math.MaxInt32)
	}
	return dKey, dVal, total, nil
}
