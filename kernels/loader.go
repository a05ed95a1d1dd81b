package kernels

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// EnvLibDir names the environment variable searched (after Options.LibDir)
// for the GPU kernel libraries.
const EnvLibDir = "PPLUG_KERNELS_DIR"

// LibraryName returns the file name of the kernel library of a GPU backend
// ("cuda" or "metal"), or "" for other names.
func LibraryName(backend string) string {
	switch backend {
	case "cuda":
		return "libpplug_kernels_cuda.so"
	case "metal":
		return "libpplug_kernels_metal.dylib"
	}
	return ""
}

// platformGPU is the GPU backend "auto" tries on this platform ("" if none).
func platformGPU() string {
	switch runtime.GOOS {
	case "linux":
		return "cuda"
	case "darwin":
		return "metal"
	}
	return ""
}

func platformName() string { return runtime.GOOS + "/" + runtime.GOARCH }

// searchExecutableDirs lets tests keep the executable's folders out of the
// search (a test binary may be run from a folder that holds a real library).
var searchExecutableDirs = true

type searchDir struct {
	dir, origin string
}

// SearchDirs lists the folders searched for the GPU kernel libraries, in
// order, each with where it came from.
func SearchDirs(opts Options) []string {
	var out []string
	for _, d := range searchDirs(opts) {
		out = append(out, d.dir)
	}
	return out
}

func searchDirs(opts Options) []searchDir {
	var dirs []searchDir
	if opts.LibDir != "" {
		dirs = append(dirs, searchDir{opts.LibDir, "Options.LibDir"})
	}
	if env := os.Getenv(EnvLibDir); env != "" {
		for _, d := range filepath.SplitList(env) {
			if d != "" {
				dirs = append(dirs, searchDir{d, "$" + EnvLibDir})
			}
		}
	}
	if searchExecutableDirs {
		if exe, err := os.Executable(); err == nil {
			if real, err := filepath.EvalSymlinks(exe); err == nil {
				exe = real
			}
			dir := filepath.Dir(exe)
			dirs = append(dirs,
				searchDir{dir, "executable folder"},
				searchDir{filepath.Join(dir, "..", "lib", "pplug"), "<executable folder>/../lib/pplug"})
		}
	}
	return dirs
}

// findLibrary returns the first existing library file of backend in the
// search folders, or an error naming the file and every folder searched.
func findLibrary(backend string, opts Options) (string, error) {
	name := LibraryName(backend)
	dirs := searchDirs(opts)
	for _, d := range dirs {
		p := filepath.Join(d.dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	var where []string
	for _, d := range dirs {
		where = append(where, fmt.Sprintf("%s (%s)", d.dir, d.origin))
	}
	if len(where) == 0 {
		return "", fmt.Errorf("kernels: %s backend unavailable: %s not found: no folder to search (set Options.LibDir or $%s)",
			backend, name, EnvLibDir)
	}
	return "", fmt.Errorf("kernels: %s backend unavailable: %s not found in %s (build it with `make gpu`, then set Options.LibDir or $%s)",
		backend, name, strings.Join(where, ", "), EnvLibDir)
}
