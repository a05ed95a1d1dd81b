package kernels

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// isolate keeps every real library out of the search: empty LibDir and
// $PPLUG_KERNELS_DIR, no executable folders.
func isolate(t *testing.T) Options {
	t.Helper()
	saved := searchExecutableDirs
	searchExecutableDirs = false
	t.Cleanup(func() { searchExecutableDirs = saved })
	envDir := t.TempDir()
	t.Setenv(EnvLibDir, envDir)
	return Options{LibDir: t.TempDir(), Threads: 2, Logger: slog.New(slog.DiscardHandler)}
}

// recordHandler keeps every log record.
type recordHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r)
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordHandler) text(level slog.Level) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b bytes.Buffer
	for _, r := range h.recs {
		if r.Level != level {
			continue
		}
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool {
			b.WriteString(" " + a.Key + "=" + a.Value.String())
			return true
		})
		b.WriteString("\n")
	}
	return b.String()
}

func TestOpenCPU(t *testing.T) {
	for _, dev := range []string{"cpu", "CPU", " cpu "} {
		b, err := Open(dev, Options{Threads: 3, Logger: slog.New(&recordHandler{})})
		if err != nil {
			t.Fatal(err)
		}
		if b.Name() != "cpu" || b.Device() != "cpu (3 threads)" {
			t.Errorf("%q: got %s / %s", dev, b.Name(), b.Device())
		}
		b.Close()
	}
}

func TestOpenAutoFallsBackToCPU(t *testing.T) {
	opts := isolate(t)
	h := &recordHandler{}
	opts.Logger = slog.New(h)
	for _, dev := range []string{"auto", ""} {
		b, err := Open(dev, opts)
		if err != nil {
			t.Fatalf("Open(%q): %v", dev, err)
		}
		if b.Name() != "cpu" {
			t.Fatalf("Open(%q) picked %s with no library present", dev, b.Name())
		}
		b.Close()
	}
	if info := h.text(slog.LevelInfo); !strings.Contains(info, "using cpu backend") {
		t.Errorf("no Info record of the choice; got:\n%s", info)
	}
	if gpu := platformGPU(); gpu != "" {
		debug := h.text(slog.LevelDebug)
		if !strings.Contains(debug, LibraryName(gpu)) || !strings.Contains(debug, "falling back") {
			t.Errorf("Debug records do not give the reason; got:\n%s", debug)
		}
	}
}

func TestOpenGPUMissingLibrary(t *testing.T) {
	gpu := platformGPU()
	if gpu == "" {
		t.Skipf("no GPU backend on %s", platformName())
	}
	opts := isolate(t)
	_, err := Open(gpu, opts)
	if err == nil {
		t.Fatalf("Open(%q) with no library succeeded", gpu)
	}
	msg := err.Error()
	for _, want := range []string{LibraryName(gpu), opts.LibDir, os.Getenv(EnvLibDir), "Options.LibDir", "$" + EnvLibDir} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
}

func TestOpenOtherPlatformGPU(t *testing.T) {
	other := "metal"
	if runtime.GOOS == "darwin" {
		other = "cuda"
	}
	_, err := Open(other, isolate(t))
	if err == nil || !strings.Contains(err.Error(), "not available on") {
		t.Errorf("Open(%q) on %s: %v", other, platformName(), err)
	}
}

// A file with the library's name that is not a shared library: a clean error
// for the explicit device, the CPU for auto.
func TestOpenBogusLibrary(t *testing.T) {
	gpu := platformGPU()
	if gpu == "" {
		t.Skipf("no GPU backend on %s", platformName())
	}
	opts := isolate(t)
	path := filepath.Join(opts.LibDir, LibraryName(gpu))
	if err := os.WriteFile(path, []byte("this is not a shared library\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Open(gpu, opts)
	if err == nil {
		t.Fatal("a bogus library opened")
	}
	if !strings.Contains(err.Error(), "dlopen") || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name dlopen and %s", err, path)
	}
	b, err := Open("auto", opts)
	if err != nil || b.Name() != "cpu" {
		t.Fatalf("auto with a bogus library: %v, %v", b, err)
	}
}

// A real shared library without the ABI's symbols.
func TestOpenWrongLibrary(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("uses a Linux system library")
	}
	var libm string
	for _, c := range []string{
		"/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6",
		"/lib/aarch64-linux-gnu/libm.so.6", "/usr/lib/aarch64-linux-gnu/libm.so.6",
		"/lib64/libm.so.6", "/usr/lib64/libm.so.6", "/lib/libm.so.6", "/usr/lib/libm.so.6",
	} {
		if _, err := os.Stat(c); err == nil {
			libm = c
			break
		}
	}
	if libm == "" {
		t.Skip("libm.so.6 not found")
	}
	opts := isolate(t)
	if err := os.Symlink(libm, filepath.Join(opts.LibDir, LibraryName("cuda"))); err != nil {
		t.Fatal(err)
	}
	_, err := Open("cuda", opts)
	if err == nil || !strings.Contains(err.Error(), "pplug_abi_version") {
		t.Errorf("want an error naming the missing symbol, got %v", err)
	}
}

func TestOpenUnknownDevice(t *testing.T) {
	for _, dev := range []string{"tpu", "cpu:1", "cuda:", "cuda:x", "cuda:-1"} {
		if _, err := Open(dev, Options{}); err == nil {
			t.Errorf("Open(%q) succeeded", dev)
		}
	}
}

func TestParseDevice(t *testing.T) {
	for _, c := range []struct {
		in   string
		name string
		idx  int
	}{{"cuda", "cuda", 0}, {"cuda:3", "cuda", 3}, {"auto:1", "auto", 1}, {"metal:0", "metal", 0}} {
		name, idx, err := parseDevice(c.in)
		if err != nil || name != c.name || idx != c.idx {
			t.Errorf("parseDevice(%q) = %q, %d, %v", c.in, name, idx, err)
		}
	}
}

func TestSearchDirsOrder(t *testing.T) {
	saved := searchExecutableDirs
	searchExecutableDirs = true
	defer func() { searchExecutableDirs = saved }()
	t.Setenv(EnvLibDir, "/env/dir")
	dirs := SearchDirs(Options{LibDir: "/opt/dir"})
	if len(dirs) != 4 || dirs[0] != "/opt/dir" || dirs[1] != "/env/dir" ||
		dirs[3] != filepath.Join(dirs[2], "..", "lib", "pplug") {
		t.Errorf("search order %v", dirs)
	}
}

// TestCheckDevice: CheckDevice accepts what Open understands and refuses
// the rest with Open's own message, opening nothing.
func TestCheckDevice(t *testing.T) {
	for _, ok := range []string{"", "auto", "cpu", "CUDA", " metal ", "cuda:1", "auto:0"} {
		if err := CheckDevice(ok); err != nil {
			t.Errorf("CheckDevice(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"bogus", "cpu:0", "cuda:", "cuda:x", "gpu"} {
		err := CheckDevice(bad)
		_, openErr := Open(bad, Options{})
		if err == nil || openErr == nil || err.Error() != openErr.Error() {
			t.Errorf("CheckDevice(%q) = %v, Open: %v", bad, err, openErr)
		}
	}
}
