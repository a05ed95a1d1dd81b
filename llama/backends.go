package llama

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/pplug/pplug/cgo"
)

// BackendsDirEnv names a folder searched first for ggml backend modules.
const BackendsDirEnv = "PPLUG_BACKENDS_DIR"

// BackendDirs is where LoadBackends looks, in order: $PPLUG_BACKENDS_DIR,
// the executable's folder and <executable folder>/../lib/pplug (where
// `make gpu-install` puts them).
func BackendDirs() []string {
	var dirs []string
	if d := os.Getenv(BackendsDirEnv); d != "" {
		dirs = append(dirs, d)
	}
	if exe, err := os.Executable(); err == nil {
		if r, err := filepath.EvalSymlinks(exe); err == nil {
			exe = r
		}
		dir := filepath.Dir(exe)
		dirs = append(dirs, dir, filepath.Join(dir, "..", "lib", "pplug"))
	}
	return dirs
}

// backendFiles lists the loadable ggml backends in dir: libggml-<name>.so
// (.dylib on macOS), not ggml-base and not the CPU backend, which is built in.
func backendFiles(dir string) []string {
	ext := ".so"
	if runtime.GOOS == "darwin" {
		ext = ".dylib"
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, "libggml-") || !strings.HasSuffix(n, ext) {
			continue
		}
		switch strings.TrimSuffix(strings.TrimPrefix(n, "libggml-"), ext) {
		case "base", "cpu":
			continue
		}
		out = append(out, filepath.Join(dir, n))
	}
	sort.Strings(out)
	return out
}

var (
	backendsOnce   sync.Once
	backendsLoaded []string
)

// LoadBackends loads, once per process, the ggml GPU backends (built by
// `make gpu` from the same ggml sources) found in BackendDirs, so that
// ModelOptions.GPULayers can offload to them. A backend that fails to load
// (no driver, missing libraries) is skipped and logged; the CPU remains.
// It returns the names of the backends loaded.
func LoadBackends() []string {
	backendsOnce.Do(func() {
		seen := map[string]bool{}
		for _, dir := range BackendDirs() {
			for _, f := range backendFiles(dir) {
				base := filepath.Base(f)
				if seen[base] {
					continue
				}
				name, err := cgo.LoadBackend(f)
				if err != nil {
					slog.Debug("ggml backend not loaded", "file", f, "error", err)
					continue
				}
				seen[base] = true
				backendsLoaded = append(backendsLoaded, name)
				slog.Info("ggml backend loaded", "backend", name, "file", f)
			}
		}
	})
	return backendsLoaded
}

// Device describes a compute device llama.cpp can use.
type Device struct {
	Name, Description, Backend string
	MemFree, MemTotal          uint64
	GPU                        bool
	host                       bool // the CPU or an accelerator (BLAS, AMX): never an offload device
}

// Devices lists the devices of the loaded backends.
func Devices() []Device {
	var out []Device
	for _, d := range cgo.Devices() {
		out = append(out, Device{
			Name: d.Name, Description: d.Description, Backend: d.Backend,
			MemFree: d.MemFree, MemTotal: d.MemTotal,
			GPU:  d.Type == cgo.DeviceGPU || d.Type == cgo.DeviceIGPU,
			host: d.Type == cgo.DeviceAccel || d.Type == cgo.DeviceCPU,
		})
	}
	return out
}

// String renders a device for logs and version output.
func (d Device) String() string {
	s := fmt.Sprintf("%s (%s, %s)", d.Name, d.Description, d.Backend)
	if d.MemTotal > 0 {
		s += fmt.Sprintf(", %.1f/%.1f GiB free", float64(d.MemFree)/(1<<30), float64(d.MemTotal)/(1<<30))
	}
	return s
}

// MainDevice is the device that runs the model's layers: with GPULayers > 0
// the first of the devices it was loaded onto (ModelOptions.Devices, by
// default llama.cpp's rule: the GPUs of the loaded backends, RPC servers
// aside, else the integrated GPUs), or the MainGPU-th with SplitNone; else
// the CPU. The plug-in follows it (persona.OpenBackend).
func (m *Model) MainDevice() Device {
	raw, devs := cgo.Devices(), Devices()
	find := func(t cgo.DeviceType) (Device, bool) {
		for i, d := range raw {
			if d.Type == t && d.Backend != "RPC" {
				return devs[i], true
			}
		}
		return Device{}, false
	}
	named := m.devOpts.Devices
	switch {
	case !m.gpu || (len(named) == 1 && named[0] == DeviceNone):
	case named != nil:
		i := 0
		if m.devOpts.SplitMode == SplitNone && m.devOpts.MainGPU < len(named) {
			i = m.devOpts.MainGPU
		}
		for _, d := range devs {
			if d.Name == named[i] {
				return d
			}
		}
	default:
		if d, ok := find(cgo.DeviceGPU); ok {
			return d
		}
		if d, ok := find(cgo.DeviceIGPU); ok {
			return d
		}
	}
	if d, ok := find(cgo.DeviceCPU); ok {
		return d
	}
	return Device{Name: "CPU", Backend: "CPU"}
}
