package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pplug/pplug/internal/testenv"
)

// TestVulkanDeviceFlags runs pplug with ggml's Vulkan backend (make vulkan;
// lavapipe with GGML_VK_VISIBLE_DEVICES=0): --list-devices shows the
// device, -dev Vulkan0 -ngl 99 gives the greedy text of -dev none, and
// bench's -ngl and -dev lists give one row per combination. Each run is
// a child process: backends load once per process. Without the library
// it skips (PPLUG_REQUIRE_VULKAN=1: fails), as TestVulkanParity.
func TestVulkanDeviceFlags(t *testing.T) {
	dir := os.Getenv("PPLUG_BACKENDS_DIR")
	if dir == "" {
		root, _ := testenv.RepoRoot()
		dir = filepath.Join(root, "bin")
	}
	if _, err := os.Stat(filepath.Join(dir, "libggml-vulkan.so")); err != nil {
		if os.Getenv("PPLUG_REQUIRE_VULKAN") == "1" {
			t.Fatalf("no libggml-vulkan.so in %s (make vulkan)", dir)
		}
		t.Skipf("no libggml-vulkan.so in %s: build it with make vulkan", dir)
	}
	model := testenv.Stories260K(t)
	pplugVK := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), "PPLUG_RUN_MAIN=1", "PPLUG_BACKENDS_DIR="+dir, "LP_NUM_THREADS=1")
		if os.Getenv("GGML_VK_VISIBLE_DEVICES") == "" {
			cmd.Env = append(cmd.Env, "GGML_VK_VISIBLE_DEVICES=0")
		}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("pplug %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	list := pplugVK("generate", "--list-devices")
	if !strings.Contains(list, "  Vulkan0: ") || !strings.Contains(list, "  CPU: ") {
		if os.Getenv("PPLUG_REQUIRE_VULKAN") == "1" {
			t.Fatalf("no Vulkan0 device:\n%s", list)
		}
		t.Skipf("the Vulkan backend shows no device (install mesa-vulkan-drivers):\n%s", list)
	}
	gen := []string{"generate", "-m", model, "-p", "Once upon a time", "-n", "16", "--temp", "0", "-t", "1"}
	cpu := pplugVK(append(gen, "-dev", "none", "-ngl", "99")...)
	vk := pplugVK(append(gen, "-dev", "Vulkan0", "-ngl", "99")...)
	if vk != cpu || cpu == "" {
		t.Errorf("greedy text on Vulkan0 %q, on the CPU %q", vk, cpu)
	}
	rows := pplugVK("bench", "-m", model, "-p", "8", "-n", "0", "-r", "1", "-t", "1", "-ngl", "0,99", "-dev", "none,Vulkan0", "-o", "jsonl")
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(rows), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		got = append(got, fmt.Sprintf("%v/%v", r["devices"], r["n_gpu_layers"]))
	}
	if want := "none/0 none/99 Vulkan0/0 Vulkan0/99"; strings.Join(got, " ") != want {
		t.Errorf("bench rows %v, want %s", got, want)
	}
}
