package kernels

// The purego binding, tested on any machine with a C compiler: testdata/
// pplug_kernels_ref.c (a plain C implementation of pplug_kernels.h) is
// compiled into a temporary library with the GPU library's name, and the
// backend suite runs through it. Skipped when no C compiler is found.

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var refTol = tolerances{project: 1e-5, aggregate: 1e-5, weights: 1e-6}

var (
	refMu   sync.Mutex
	refLibs = map[string]string{} // extra cc flags -> library folder
	refRoot string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if refRoot != "" {
		os.RemoveAll(refRoot)
	}
	os.Exit(code)
}

// buildRef compiles the reference library (once per flag set) and returns the
// folder that holds it under the platform GPU library's name.
func buildRef(t testing.TB, flags ...string) string {
	t.Helper()
	gpu := platformGPU()
	if gpu == "" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64") {
		t.Skipf("no GPU library loading on %s", platformName())
	}
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	if _, err := exec.LookPath(cc); err != nil {
		t.Skipf("no C compiler (%s) to build testdata/pplug_kernels_ref.c: %v", cc, err)
	}
	refMu.Lock()
	defer refMu.Unlock()
	key := strings.Join(flags, " ")
	if dir, ok := refLibs[key]; ok {
		return dir
	}
	if refRoot == "" {
		d, err := os.MkdirTemp("", "pplug-kernels-ref-")
		if err != nil {
			t.Fatal(err)
		}
		refRoot = d
	}
	dir := filepath.Join(refRoot, fmt.Sprint(len(refLibs)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"-shared", "-fPIC", "-O1", "-Iinclude", `-DPPLUG_REF_BACKEND="` + gpu + `"`}
	args = append(args, flags...)
	args = append(args, "-o", filepath.Join(dir, LibraryName(gpu)), "testdata/pplug_kernels_ref.c", "-lm")
	if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", cc, strings.Join(args, " "), err, out)
	}
	refLibs[key] = dir
	return dir
}

// openRef opens the GPU backend name on the reference library.
func openRef(t *testing.T) Backend {
	t.Helper()
	dir := buildRef(t)
	opts := isolate(t)
	opts.LibDir = dir
	b, err := Open(platformGPU(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if b.Name() != platformGPU() || b.Device() != "reference C (test)" {
		t.Fatalf("opened %s / %q", b.Name(), b.Device())
	}
	return b
}

func TestRefProject(t *testing.T)   { runProjectChecks(t, openRef(t), refTol.project) }
func TestRefAggregate(t *testing.T) { runAggregateChecks(t, openRef(t), refTol) }
func TestRefEqualSimilarities(t *testing.T) {
	runEqualSimilarityChecks(t, openRef(t))
}
func TestRefMasking(t *testing.T) { runMaskingChecks(t, openRef(t), false) }
func TestRefErrors(t *testing.T)  { runErrorChecks(t, openRef(t), newCPU(1)) }
func TestRefClose(t *testing.T)   { runCloseChecks(t, openRef(t)) }

// Errors raised inside the library come back with its last-error text.
func TestRefLibraryErrors(t *testing.T) {
	b := openRef(t)
	h, ok := b.(interface {
		aggregateHost(offsets []int32, queries, keys, values []float32, dKey, dVal int, tau float32, out, weights []float32) error
	})
	if !ok {
		t.Fatal("no aggregateHost")
	}
	// offsets[0] != 0 is only checked by the library in this entry point
	err := h.aggregateHost([]int32{1, 1}, make([]float32, 2), make([]float32, 2), make([]float32, 3), 2, 3, 1, make([]float32, 3), nil)
	if err == nil || !strings.Contains(err.Error(), "offsets[0] = 1") || !strings.Contains(err.Error(), "invalid argument") {
		t.Errorf("library error not propagated: %v", err)
	}
}

func TestRefAggregateHostArrays(t *testing.T) {
	b := openRef(t)
	h := b.(interface {
		aggregateHost(offsets []int32, queries, keys, values []float32, dKey, dVal int, tau float32, out, weights []float32) error
	})
	users := makeRefUsers(newRand(23), []aggUser{{n: 4}, {n: 0}, {n: 30}, {n: 1}}, 9, 11)
	var keys, values []float32
	counts := []int{}
	for _, u := range users {
		keys, values = append(keys, u.keys...), append(values, u.values...)
		counts = append(counts, u.n)
	}
	off := offsetsOf(counts)
	q := randVec(newRand(24), len(users)*9, 1)
	out, w := make([]float32, len(users)*11), make([]float32, off[len(users)])
	if err := h.aggregateHost(off, q, keys, values, 9, 11, 0.3, out, w); err != nil {
		t.Fatal(err)
	}
	wantOut, wantW := refAggregate(users, q, 9, 11, 0.3)
	if e, ew := maxRelErr(out, wantOut), maxRelErr(w, wantW); e > refTol.aggregate || ew > refTol.weights {
		t.Errorf("rel errors %g, %g", e, ew)
	}
}

// auto picks a library that reports a device.
func TestOpenAutoPicksGPU(t *testing.T) {
	dir := buildRef(t)
	opts := isolate(t)
	t.Setenv(EnvLibDir, dir) // found through the environment this time
	h := &recordHandler{}
	opts.Logger = slog.New(h)
	b, err := Open("auto", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Name() != platformGPU() {
		t.Fatalf("auto picked %s", b.Name())
	}
	if info := h.text(slog.LevelInfo); !strings.Contains(info, "using "+platformGPU()+" backend") || !strings.Contains(info, dir) {
		t.Errorf("Info record: %q", info)
	}
}

// Options.LibDir comes before $PPLUG_KERNELS_DIR.
func TestOpenLibDirFirst(t *testing.T) {
	good := buildRef(t)
	opts := isolate(t)
	bogus := t.TempDir()
	if err := os.WriteFile(filepath.Join(bogus, LibraryName(platformGPU())), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvLibDir, bogus)
	opts.LibDir = good
	b, err := Open(platformGPU(), opts)
	if err != nil {
		t.Fatalf("LibDir not searched first: %v", err)
	}
	b.Close()
}

func TestOpenABIMismatch(t *testing.T) {
	dir := buildRef(t, "-DPPLUG_REF_ABI=99")
	opts := isolate(t)
	opts.LibDir = dir
	_, err := Open(platformGPU(), opts)
	if err == nil || !strings.Contains(err.Error(), "ABI 99") {
		t.Errorf("want an ABI version error, got %v", err)
	}
	b, err := Open("auto", opts)
	if err != nil || b.Name() != "cpu" {
		t.Errorf("auto with a wrong-ABI library: %v, %v", b, err)
	}
}

func TestOpenDeviceIndex(t *testing.T) {
	dir := buildRef(t)
	opts := isolate(t)
	opts.LibDir = dir
	_, err := Open(platformGPU()+":1", opts)
	if err == nil || !strings.Contains(err.Error(), "device 1 requested, 1 present") {
		t.Errorf("device index 1 of 1: %v", err)
	}
}

// Concurrent use of one backend (run with -race).
func TestRefConcurrent(t *testing.T) { runConcurrentChecks(t, openRef(t)) }
func TestCPUConcurrent(t *testing.T) { runConcurrentChecks(t, newCPU(2)) }

func runConcurrentChecks(t *testing.T, b Backend) {
	r := newRand(25)
	const dKey, dVal = 8, 12
	users := makeRefUsers(r, []aggUser{{n: 3}, {n: 10}, {n: 1}}, dKey, dVal)
	rs := uploadAll(t, b, users, dKey, dVal)
	q := randVec(r, 3*dKey, 1)
	want := make([]float32, 3*dVal)
	if err := b.Aggregate(rs, q, 0.5, want, nil); err != nil {
		t.Fatal(err)
	}
	p := randProjector(r, 5, 6, 2)
	in := randVec(r, 4*5, 1)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i := 0; i < 20; i++ {
				out := make([]float32, 3*dVal)
				if err := b.Aggregate(rs, q, 0.5, out, nil); err != nil {
					errs <- err
					return
				}
				for j := range out {
					if out[j] != want[j] {
						errs <- fmt.Errorf("concurrent Aggregate differs at %d", j)
						return
					}
				}
				if err := b.Project(p, in, 4, make([]float32, 4*6)); err != nil {
					errs <- err
					return
				}
				extra, err := b.Upload(randVec(newRand(uint64(i)), dKey, 1), make([]float32, dVal), 1, dKey, dVal)
				if err != nil {
					errs <- err
					return
				}
				extra.Close()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
