package llama

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

var defaultThreads = sync.OnceValue(physicalCores)

// DefaultThreads is the number of physical cores this process may run on:
// llama.cpp's compute threads spin, and two of them on one core's hyper-
// threads, or more threads than cores, slow decoding down sharply.
func DefaultThreads() int { return defaultThreads() }

func physicalCores() int {
	allowed := runtime.NumCPU() // honours the affinity mask
	if runtime.GOOS != "linux" {
		return max(1, allowed)
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return max(1, allowed)
	}
	cores := map[string]bool{}
	for cpu := range 4096 {
		if !set.IsSet(cpu) {
			continue
		}
		dir := filepath.Join("/sys/devices/system/cpu", "cpu"+strconv.Itoa(cpu), "topology")
		core, err1 := os.ReadFile(filepath.Join(dir, "core_id"))
		pkg, err2 := os.ReadFile(filepath.Join(dir, "physical_package_id"))
		if err1 != nil || err2 != nil {
			return max(1, allowed)
		}
		cores[strings.TrimSpace(string(pkg))+"/"+strings.TrimSpace(string(core))] = true
	}
	if len(cores) == 0 {
		return max(1, allowed)
	}
	return min(len(cores), allowed)
}
