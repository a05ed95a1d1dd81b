package scripts_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeTools writes stand-ins for nvidia-smi and nvcc into a folder and
// returns the environment that puts it first on PATH.
func fakeTools(t *testing.T, smi string) (dir string, env []string) {
	t.Helper()
	dir = t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("nvidia-smi", smi)
	write("nvcc", "echo 'Cuda compilation tools, release 12.4, V12.4.131'\n")
	bin := t.TempDir() // an existing, empty folder of test binaries
	env = []string{
		"PATH=" + dir + ":" + os.Getenv("PATH"), "NVCC=" + filepath.Join(dir, "nvcc"),
		"GPU_CHECK_OUT=" + t.TempDir(), "GPU_CHECK_BIN=" + bin, "GPU_CHECK_NO_BUILD=1",
	}
	return dir, env
}

const (
	noDriver = "echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'; exit 9\n"
	anH100   = `case "$*" in
*driver_version*) echo 'NVIDIA H100 80GB HBM3, 9.0, 550.54.15, 81559 MiB' ;;
*name*) echo 'NVIDIA H100 80GB HBM3' ;;
*compute_cap*) echo '9.0' ;;
esac
`
)

// Without a GPU the script skips, saying why, and exits 0 (1 with
// --require-gpu), dry run or not.
func TestGPUCheckSkipsWithoutGPU(t *testing.T) {
	_, env := fakeTools(t, noDriver)
	for _, args := range [][]string{{"--dry-run"}, nil} {
		out, errs, code := runTool(t, env, "scripts/gpu-check.sh", args...)
		if code != 0 || !strings.Contains(out, "SKIP: no GPU on this machine") || !strings.Contains(out, "could not communicate with the NVIDIA driver") {
			t.Errorf("%v: exit %d\n%s%s", args, code, out, errs)
		}
	}
	out, _, code := runTool(t, env, "scripts/gpu-check.sh", "--require-gpu")
	if code != 1 || !strings.Contains(out, "SKIP") {
		t.Errorf("--require-gpu: exit %d, want 1:\n%s", code, out)
	}
}

// A dry run on an NVIDIA machine names the card and lists every step it
// would run, and what it lacks, without running anything.
func TestGPUCheckDryRunPlansTheChecks(t *testing.T) {
	_, env := fakeTools(t, anH100)
	out, errs, code := runTool(t, env, "scripts/gpu-check.sh", "--dry-run")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{
		"GPU: NVIDIA H100 80GB HBM3, 9.0", "plan (dry run: nothing runs)",
		"cuda-build", "-arch=sm_90", "cuda-parity", "PPLUG_REQUIRE_GPU", "cuda-bench",
		"speed: SKIPPED (no ggml GPU backend", "missing:", "kernels.test (make gpu-check-prep)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the dry run lacks %q:\n%s", want, out)
		}
	}
}

// A real run that lacks its test binaries stops before any work, naming
// them and the make target that builds them (exit 2); a bad argument is a
// usage error.
func TestGPUCheckFailsClearly(t *testing.T) {
	_, env := fakeTools(t, anH100)
	out, errs, code := runTool(t, env, "scripts/gpu-check.sh")
	if code != 2 || !strings.Contains(out, "ERROR: missing:") || !strings.Contains(out, "make gpu-check-prep") {
		t.Errorf("missing binaries: exit %d, want 2 naming them:\n%s%s", code, out, errs)
	}
	_, errs, code = runTool(t, env, "scripts/gpu-check.sh", "--bogus")
	if code != 2 || !strings.Contains(errs, "unknown argument --bogus") {
		t.Errorf("--bogus: exit %d: %s", code, errs)
	}
}
