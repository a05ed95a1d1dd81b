#!/usr/bin/env bash
# scripts/gpu-check.sh - check the CUDA kernels on a fresh GPU machine, in one command.
#
# For an NVIDIA GPU machine (H100/H200 class) with the driver and the CUDA
# toolkit (nvcc; CMake is used when present) but no Go and no network. It
# needs the repository tree plus one Go test binary built elsewhere:
#
#   on a machine with Go (Linux, same CPU architecture):
#       make gpu-check-prep        # = CGO_ENABLED=0 go test -c -o build/kernels.test ./kernels/
#   carry build/kernels.test with the tree, then on the GPU machine:
#       scripts/gpu-check.sh [path/to/kernels.test]
#
# Steps (about 2 to 3 minutes on an H100):
#   1. build libpplug_kernels_cuda.so for the local GPU (nvidia-smi compute_cap;
#      CUDA_ARCH overrides) with CMake (CMakeLists.txt, PPLUG_CUDA) or plain nvcc;
#   2. run the kernels package's tests: every CUDA kernel against the float64
#      oracle and against the CPU backend at realistic sizes (PPLUG_REQUIRE_GPU=1:
#      a missing library or device fails instead of skipping);
#   3. benchmark items/s, CPU vs CUDA: projector over 32768 items (768 -> 4096;
#      the CPU runs CPU_PROJECT_ITEMS=4096 of them, a rate is a rate),
#      aggregation over 64 users x 512 resident items;
#   4. print a summary. Logs: build/gpu-check/{build,tests,bench}.log.
#
# Exit status: 0 when the build and every test pass.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${GPU_CHECK_OUT:-$ROOT/build/gpu-check}
LIBDIR=$OUT/lib
TEST_BIN=${1:-$ROOT/build/kernels.test}
START=$(date +%s)

log() { printf '[gpu-check +%3ss] %s\n' "$(($(date +%s) - START))" "$*"; }
die() { log "ERROR: $*"; exit 2; }

mkdir -p "$OUT" "$LIBDIR" || die "cannot create $OUT"
[ -f "$TEST_BIN" ] || die "test binary $TEST_BIN not found; build it where Go is installed: make gpu-check-prep (CGO_ENABLED=0 go test -c -o build/kernels.test ./kernels/)"
TEST_BIN=$(cd "$(dirname "$TEST_BIN")" && pwd)/$(basename "$TEST_BIN")
chmod +x "$TEST_BIN" 2>/dev/null

# ---- the machine -------------------------------------------------------------
command -v nvidia-smi >/dev/null || die "nvidia-smi not found: no NVIDIA driver?"
GPU_INFO=$(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>&1 | head -n1)
CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | grep -E '^[0-9]+\.[0-9]+$' | head -n1 | tr -d .)
ARCH=${CUDA_ARCH:-${CAP:-90}}
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
[ -x "$NVCC" ] || die "nvcc not found (set NVCC or put the CUDA toolkit's bin on PATH)"
CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$(readlink -f "$NVCC")")")}
NVCC_VER=$("$NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
export LD_LIBRARY_PATH="$CUDA_HOME/lib64:$CUDA_HOME/lib:$CUDA_HOME/targets/x86_64-linux/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
log "GPU: $GPU_INFO; nvcc $NVCC_VER ($NVCC); building for sm_$ARCH; $(nproc) CPU threads"

# ---- 1. build -----------------------------------------------------------------
BUILD_HOW=""
rm -f "$LIBDIR/libpplug_kernels_cuda.so"
: >"$OUT/build.log"
if command -v cmake >/dev/null; then
    log "building with $(cmake --version | head -n1)"
    if timeout 300 cmake -S "$ROOT" -B "$OUT/cmake" -DPPLUG_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
            -DCMAKE_CUDA_COMPILER="$NVCC" -DCMAKE_CUDA_ARCHITECTURES="$ARCH" >>"$OUT/build.log" 2>&1 &&
        timeout 300 cmake --build "$OUT/cmake" -j "$(nproc)" --target pplug_kernels_cuda >>"$OUT/build.log" 2>&1 &&
        cp "$OUT/cmake/lib/pplug/libpplug_kernels_cuda.so" "$LIBDIR/"; then
        BUILD_HOW="cmake"
    else
        log "CMake build failed (see $OUT/build.log); trying nvcc directly"
    fi
fi
if [ -z "$BUILD_HOW" ]; then
    if timeout 300 "$NVCC" -O3 -std=c++17 -arch="sm_$ARCH" -shared -Xcompiler -fPIC,-fvisibility=hidden \
            -I"$ROOT/kernels/include" -DPPLUG_KERNELS_BUILD "$ROOT/kernels/cuda/pplug_kernels.cu" \
            -o "$LIBDIR/libpplug_kernels_cuda.so" -lcublas -Xlinker "-rpath,$CUDA_HOME/lib64" >>"$OUT/build.log" 2>&1; then
        BUILD_HOW="nvcc"
    else
        tail -n 30 "$OUT/build.log"
        die "building libpplug_kernels_cuda.so failed (log: $OUT/build.log)"
    fi
fi
log "built $LIBDIR/libpplug_kernels_cuda.so with $BUILD_HOW"

# ---- 2. tests -------------------------------------------------------------------
# The binary runs in kernels/ so that testdata/ is found (the reference-C tests need a C compiler).
log "running the kernels tests (parity: CUDA vs float64 oracle and vs CPU backend)"
(cd "$ROOT/kernels" && PPLUG_KERNELS_DIR="$LIBDIR" PPLUG_REQUIRE_GPU=1 \
    timeout 300 "$TEST_BIN" -test.count=1 -test.v -test.timeout=280s) >"$OUT/tests.log" 2>&1
TEST_RC=$?
log "tests finished (exit $TEST_RC)"

# ---- 3. benchmarks --------------------------------------------------------------
log "benchmarking CPU vs CUDA (64 users x 512 items, d_enc 768, d_llm 4096)"
(cd "$ROOT/kernels" && PPLUG_KERNELS_DIR="$LIBDIR" PPLUG_BENCH_CPU_PROJECT_ITEMS="${CPU_PROJECT_ITEMS:-4096}" \
    timeout 300 "$TEST_BIN" -test.run='^$' -test.bench='^Benchmark(Project|Aggregate)$' \
    -test.benchtime="${BENCHTIME:-2s}" -test.timeout=280s) >"$OUT/bench.log" 2>&1
BENCH_RC=$?
log "benchmarks finished (exit $BENCH_RC)"

# ---- 4. summary ---------------------------------------------------------------------
echo
echo "================ pplug CUDA kernel check ================"
echo "GPU          : $GPU_INFO"
echo "toolkit      : nvcc $NVCC_VER, sm_$ARCH, built with $BUILD_HOW"
echo
echo "parity (max error relative to the output's largest magnitude):"
awk '
/^=== RUN/ { cur = $3; top = cur; sub(/\/.*/, "", top); if (!(top in seen)) { seen[top] = 1; order[++n] = top } }
/max rel error/ {
    line = $0
    sub(/.*max rel error /, "", line); split(line, a, " "); v = a[1] + 0
    if (!(cur ~ /^TestGPU/)) next
    if (v > worst[top]) worst[top] = v
    if (match($0, /tolerance [0-9.e+-]+/)) { t = substr($0, RSTART + 10, RLENGTH - 10) + 0; if (t > tol[top]) tol[top] = t }
    if (match($0, /weights [0-9.e+-]+/)) { w = substr($0, RSTART + 8, RLENGTH - 8) + 0; if (w > wworst[top]) wworst[top] = w; has_w[top] = 1 }
    measured[top] = 1
}
/^--- (PASS|FAIL|SKIP)/ { name = $3; st = $2; sub(/:$/, "", st); if (name !~ /\//) status[name] = st }
END {
    for (i = 1; i <= n; i++) {
        t = order[i]
        if (t !~ /^TestGPU/) continue
        s = (t in status) ? status[t] : "?"
        if (measured[t]) {
            extra = has_w[t] ? sprintf(", weights %.2e", wworst[t]) : ""
            printf "  %-28s %-5s max rel err %.2e (tolerance up to %.0e)%s\n", t, s, worst[t], tol[t], extra
        } else {
            printf "  %-28s %s\n", t, s
        }
    }
    fails = 0; total = 0
    for (t in status) { total++; if (status[t] == "FAIL") fails++ }
    printf "  all tests (CPU, reference-C, CUDA): %d run, %d failed\n", total, fails
}' "$OUT/tests.log"
if [ "$TEST_RC" -ne 0 ]; then
    echo "  failed: $(grep -E -- '^--- FAIL' "$OUT/tests.log" | awk '{print $3}' | tr '\n' ' ')"
    echo "  first distinct messages:"
    { grep -E '^\s+[a-z_]+_test\.go:[0-9]+: ' "$OUT/tests.log" | grep -v 'max rel error' |
        sed -E 's/^\s+[a-z_]+_test\.go:[0-9]+: //'; grep -E '^panic:|timed out' "$OUT/tests.log"; } |
        awk '!seen[$0]++' | head -n 8 | sed 's/^/    /'
fi
echo
echo "throughput (items/s; higher is better):"
awk '
/^Benchmark/ {
    name = $1; sub(/-[0-9]+$/, "", name)
    split(name, p, "/"); op = p[1]; sub(/^Benchmark/, "", op); be = p[2]
    for (i = 2; i <= NF; i++) if ($i == "items/s") { rate[op, be] = $(i - 1); ops[op] = 1; bes[be] = 1 }
}
END {
    printf "  %-12s %16s %16s %10s\n", "op", "cpu", "cuda", "speed-up"
    split("Project Aggregate", list, " ")
    for (k = 1; k <= 3; k++) {
        op = list[k]; if (!(op in ops)) continue
        c = rate[op, "cpu"]; g = rate[op, "cuda"]
        printf "  %-12s %16s %16s %10s\n", op, (c == "" ? "-" : sprintf("%.4g", c)), (g == "" ? "-" : sprintf("%.4g", g)),
            (c > 0 && g > 0 ? sprintf("%.1fx", g / c) : "-")
    }
}' "$OUT/bench.log"
[ "$BENCH_RC" -ne 0 ] && { echo "  benchmark run failed (exit $BENCH_RC):"; tail -n 15 "$OUT/bench.log" | sed 's/^/    /'; }
echo
echo "sizes        : Project 32768 x (768 -> 4096 -> 4096) on CUDA, ${CPU_PROJECT_ITEMS:-4096} rows on CPU;"
echo "               Aggregate 64 users x 512 items (keys 768, values 4096)"
echo "               (host-to-device and device-to-host copies included)"
echo "logs         : $OUT/{build,tests,bench}.log"
echo "total time   : $(($(date +%s) - START)) s"
echo "result       : $([ "$TEST_RC" -eq 0 ] && echo PASS || echo FAIL)"
[ "$TEST_RC" -eq 0 ] || exit 1
exit 0
