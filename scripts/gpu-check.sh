#!/usr/bin/env bash
# scripts/gpu-check.sh - the GPU checks and speed figures, in one command, on a
# machine with an NVIDIA GPU and/or a real Vulkan GPU; about 8 minutes.
#
#   scripts/gpu-check.sh [--dry-run] [--require-gpu]
#
# What it runs, each step under its own timeout and the whole under
# GPU_CHECK_BUDGET seconds (default 480):
#   1. the machine: the card (nvidia-smi), the CUDA toolkit (nvcc, optional),
#      the Vulkan GPUs ggml sees (bin/pplug version with bin/libggml-vulkan.so);
#   2. CUDA kernels (with nvcc): libpplug_kernels_cuda.so built for the card,
#      its parity tests against the float64 oracle and the CPU backend, and
#      items/s CPU vs CUDA (projector, aggregation);
#   3. ggml on the device (each of Vulkan0 and, with build/gpu/lib/pplug/
#      libggml-cuda.so, CUDA0): the plug-in's ggml graph against the oracle
#      (TestGraph*); on Vulkan also TestVulkanParity (CPU vs device logits and
#      greedy text) and TestVulkanCommands (generate, chat, serve, embed);
#   4. speed on the qwen2-0.5B shape (pplug synth, Q8_0): pp512 / tg128 with
#      -ngl 0 and 99 (pplug bench), time to first token with a persona
#      (pplug bench --profile) at -ngl 0 and 99, and one training step
#      (pplug train, -ngl 99 when train has it);
#   5. a summary with the card's name: stdout and $OUT/summary.txt, logs in $OUT.
#
# Prerequisites, built where Go is (same CPU architecture):
#   make gpu-check-prep   bin/pplug and the test binaries in build/gpu-check-bin/
#   make vulkan           bin/libggml-vulkan.so (for the Vulkan checks)
#   make gpu              build/gpu/lib/pplug/libggml-cuda.so (for ggml on CUDA; long)
# When Go is on the GPU machine and they are missing, the script runs
# make gpu-check-prep itself (GPU_CHECK_NO_BUILD=1: never). Assets: $PPLUG_ASSETS (stories260K.gguf and
# llama-vocab/), default ../shared/assets, else build/assets.
#
# --dry-run prints what the machine has and the plan (every command, with the
# prerequisites it lacks) and runs nothing. Without a GPU the script prints
# SKIP and exits 0 (--require-gpu: 1).
# Exit status: 0 every check passed (or SKIP); 1 a check failed; 2 usage or a
# missing prerequisite. GPU_CHECK_MODEL: a GGUF for the speed runs instead of
# the synthetic qwen2-0.5B shape; GPU_CHECK_LAVAPIPE=1: see detect_vulkan.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${GPU_CHECK_OUT:-$ROOT/build/gpu-check}
TB=${GPU_CHECK_BIN:-$ROOT/build/gpu-check-bin}
PPLUG=$ROOT/bin/pplug
BUDGET=${GPU_CHECK_BUDGET:-480}
THREADS=${GPU_CHECK_THREADS:-$(nproc 2>/dev/null || echo 4)}
START=$(date +%s)
DRY=0
REQUIRE=0
FAILED=0
SUMMARY=()

for a in "$@"; do
    case $a in
    --dry-run) DRY=1 ;;
    --require-gpu) REQUIRE=1 ;;
    -h | --help) sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-check: unknown argument $a (use --dry-run, --require-gpu or --help)" >&2; exit 2 ;;
    esac
done

elapsed() { echo $(($(date +%s) - START)); }
log() { printf '[gpu-check +%3ss] %s\n' "$(elapsed)" "$*"; }
note() {
    SUMMARY+=("$*")
    [ "$DRY" = 1 ] && printf '  note: %s\n' "$*"
    return 0
}
die() { log "ERROR: $*"; exit 2; }

# ---- 1. the machine ---------------------------------------------------------------

GPU_NAME="" GPU_INFO="" CAP="" NVCC="" VK_GPUS=""

detect_nvidia() {
    command -v nvidia-smi >/dev/null || return 0
    GPU_INFO=$(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>&1 | head -n1)
    GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1) || GPU_NAME=""
    CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | grep -E '^[0-9]+\.[0-9]+$' | head -n1 | tr -d .)
}

detect_nvcc() {
    NVCC=${NVCC:-$(command -v nvcc || true)}
    [ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
    return 0
}

# detect_vulkan lists the Vulkan GPUs ggml sees (not lavapipe: ggml skips
# CPU-type devices unless GGML_VK_VISIBLE_DEVICES names them).
# GPU_CHECK_LAVAPIPE=1 lets lavapipe stand in for one, to try the script
# on a machine without a GPU (its figures are no speed figures).
detect_vulkan() {
    [ -x "$PPLUG" ] && [ -f "$ROOT/bin/libggml-vulkan.so" ] || return 0
    if [ -n "${GPU_CHECK_LAVAPIPE:-}" ]; then
        export GGML_VK_VISIBLE_DEVICES=0 LP_NUM_THREADS=1
    else
        unset GGML_VK_VISIBLE_DEVICES
    fi
    VK_GPUS=$(PPLUG_BACKENDS_DIR="$ROOT/bin" timeout 60 "$PPLUG" version 2>/dev/null |
        sed -n 's/^devices: //p' | tr ';' '\n' | grep -E '^ *Vulkan[0-9]+ ' | sed 's/^ *//')
    [ -n "${GPU_CHECK_LAVAPIPE:-}" ] || VK_GPUS=$(printf '%s\n' "$VK_GPUS" | grep -v llvmpipe)
}

assets_dir() {
    local d
    for d in "${PPLUG_ASSETS:-}" "$ROOT/../shared/assets" "$ROOT/build/assets"; do
        [ -n "$d" ] && [ -f "$d/stories260K.gguf" ] && { (cd "$d" && pwd); return; }
    done
}

# ---- steps ---------------------------------------------------------------------------

# step NAME SECONDS CMD...: runs CMD under a timeout (at most what the budget
# has left) with its output in $OUT/NAME.log; in a dry run it prints CMD.
step() {
    local name=$1 limit=$2
    shift 2
    if [ "$DRY" = 1 ]; then
        printf '  %-16s (<= %3ss) %s\n' "$name" "$limit" "$*"
        return 0
    fi
    local left=$((BUDGET - $(elapsed)))
    if [ "$left" -lt 20 ]; then
        log "$name: skipped, the ${BUDGET}s budget is spent"
        note "$name: SKIPPED (time budget spent)"
        return 3
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    log "$name (<= ${limit}s): $*"
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    [ "$rc" = 124 ] && log "$name: timed out after ${limit}s (log: $OUT/$name.log)"
    [ "$rc" != 0 ] && [ "$rc" != 124 ] && log "$name: exit $rc (log: $OUT/$name.log)"
    return "$rc"
}

# need FILE HINT: a prerequisite; missing, it is listed (dry run) or fatal.
MISSING=()
need() {
    [ -e "$1" ] && return 0
    MISSING+=("$1 ($2)")
    return 1
}

# test_result NAME LOG RC: one summary line from a go test -v log.
test_result() {
    local name=$1 logf=$2 rc=$3 pass fail
    pass=$(grep -c -- '^--- PASS' "$logf" 2>/dev/null)
    fail=$(grep -c -- '^--- FAIL' "$logf" 2>/dev/null)
    if [ "$rc" = 0 ]; then
        note "$name: PASS ($pass tests)"
    else
        FAILED=1
        note "$name: FAIL (exit $rc; $fail failed: $(grep -- '^--- FAIL' "$logf" | awk '{print $3}' | tr '\n' ' '))"
    fi
    grep -hE 'max\|Δ|max \|Δ|max rel error .*tolerance|text equal|transcript equal|Vulkan device:' "$logf" 2>/dev/null | sed 's/^ *//' | awk '!s[$0]++' | head -n 20 |
        sed 's/^/    /' >>"$OUT/details.txt"
}

cuda_kernels() {
    local lib=$OUT/lib arch=${CUDA_ARCH:-${CAP:-90}} home
    mkdir -p "$lib"
    home=$(dirname "$(dirname "$(readlink -f "$NVCC")")")
    export LD_LIBRARY_PATH="$home/lib64:$home/targets/x86_64-linux/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    if ! step cuda-build 240 "$NVCC" -O3 -std=c++17 -arch="sm_$arch" -shared -Xcompiler -fPIC,-fvisibility=hidden \
        -I"$ROOT/kernels/include" -DPPLUG_KERNELS_BUILD "$ROOT/kernels/cuda/pplug_kernels.cu" \
        -o "$lib/libpplug_kernels_cuda.so" -lcublas -Xlinker "-rpath,$home/lib64"; then
        [ "$DRY" = 1 ] || { FAILED=1; note "cuda kernels: BUILD FAILED (see $OUT/cuda-build.log)"; return; }
    fi
    step cuda-parity 180 env -C "$ROOT/kernels" PPLUG_KERNELS_DIR="$lib" PPLUG_REQUIRE_GPU=1 \
        "$TB/kernels.test" -test.count=1 -test.v -test.run 'GPU|CPU'
    local rc=$?
    [ "$DRY" = 1 ] || test_result "cuda kernels vs oracle" "$OUT/cuda-parity.log" "$rc"
    step cuda-bench 150 env -C "$ROOT/kernels" PPLUG_KERNELS_DIR="$lib" PPLUG_BENCH_CPU_PROJECT_ITEMS=4096 \
        "$TB/kernels.test" -test.run '^$' -test.bench '^Benchmark(Project|Aggregate)$' -test.benchtime 2s
    [ "$DRY" = 1 ] || kernel_rates "$OUT/cuda-bench.log"
}

# kernel_rates notes items/s of the CUDA kernels against the CPU backend.
kernel_rates() {
    local op c g
    for op in Project Aggregate; do
        c=$(awk -v op="$op" '$1 ~ "^Benchmark"op"/cpu" { for (i = 2; i <= NF; i++) if ($i == "items/s") print $(i-1) }' "$1" | head -n1)
        g=$(awk -v op="$op" '$1 ~ "^Benchmark"op"/cuda" { for (i = 2; i <= NF; i++) if ($i == "items/s") print $(i-1) }' "$1" | head -n1)
        [ -n "$c" ] && [ -n "$g" ] && note "cuda kernels $op: $(awk -v c="$c" -v g="$g" 'BEGIN { printf "%.4g items/s vs CPU %.4g (%.1fx)", g, c, g / c }')"
    done
}

# ggml_device DEV DIR: the plug-in's graph, and on Vulkan the model parity
# and the commands, on ggml device DEV with the backend modules in DIR.
ggml_device() {
    local dev=$1 dir=$2 rc
    step "graph-$dev" 120 env -C "$ROOT/kernels" PPLUG_BACKENDS_DIR="$dir" PPLUG_GRAPH_DEVICE="$dev" \
        "$TB/kernels-graph.test" -test.count=1 -test.v -test.run '^TestGraph'
    rc=$?
    [ "$DRY" = 1 ] || test_result "plug-in ggml graph on $dev vs oracle" "$OUT/graph-$dev.log" "$rc"
    case $dev in Vulkan*) ;; *) return ;; esac
    step vulkan-parity 150 env -C "$ROOT/llama" PPLUG_BACKENDS_DIR="$dir" PPLUG_REQUIRE_VULKAN=1 \
        "$TB/llama.test" -test.count=1 -test.v -test.run '^TestVulkanParity$'
    rc=$?
    [ "$DRY" = 1 ] || test_result "model on $dev vs CPU (logits, greedy text)" "$OUT/vulkan-parity.log" "$rc"
    step vulkan-commands 240 env -C "$ROOT/cmd/pplug" PPLUG_BACKENDS_DIR="$dir" PPLUG_REQUIRE_VULKAN=1 \
        "$TB/pplug-vulkan.test" -test.count=1 -test.v -test.run '^TestVulkanCommands$'
    rc=$?
    [ "$DRY" = 1 ] || test_result "generate/chat/serve/embed on $dev vs CPU" "$OUT/vulkan-commands.log" "$rc"
}

# ---- 4. speed ------------------------------------------------------------------------

# bench_rows notes pp/tg t/s per -ngl from a pplug bench jsonl log.
bench_rows() {
    grep -h '"avg_ts"' "$1" | grep -v 'C loop' | sed -E 's/.*"n_gpu_layers": ([0-9]+).*"n_prompt": ([0-9]+), "n_gen": ([0-9]+).*"avg_ts": ([0-9.e+]+).*/\1 \2 \3 \4/' |
        awk '{ t = ($2 > 0 ? "pp" $2 : "tg" $3); r[t, $1] = $4; ts[t] = 1 }
            END { for (t in ts) printf "%s: -ngl 0 %.1f t/s, -ngl 99 %.1f t/s (%.1fx)\n", t, r[t, 0], r[t, 99], (r[t, 0] > 0 ? r[t, 99] / r[t, 0] : 0) }'
}

# ttft_rows notes the persona's time to first token from pplug bench's table.
ttft_rows() {
    grep -h 'persona ttft' "$1" | awk -F'|' '{ gsub(/^ +| +$/, "", $3); gsub(/^ +| +$/, "", $4); print $3 ": " $4 " ms" }'
}

# speed_backends is the folder of the ggml GPU backend the speed runs load:
# CUDA's when built, else Vulkan's when it sees a GPU.
speed_backends() {
    if [ -n "$GPU_NAME" ] && [ -f "$ROOT/build/gpu/lib/pplug/libggml-cuda.so" ]; then
        echo "$ROOT/build/gpu/lib/pplug"
    elif [ -n "$VK_GPUS" ]; then
        echo "$ROOT/bin"
    fi
}

speed() {
    local assets=$1 model=${GPU_CHECK_MODEL:-$OUT/qwen2-0.5b-q8_0.gguf} users=$OUT/users train_ngl=() dir
    dir=$(speed_backends)
    if [ -z "$dir" ]; then
        note "speed: SKIPPED (no ggml GPU backend for -ngl 99: make vulkan, or make gpu for CUDA)"
        return
    fi
    export PPLUG_BACKENDS_DIR=$dir
    if [ -z "${GPU_CHECK_MODEL:-}" ]; then
        step synth 60 "$PPLUG" synth --preset qwen2-0.5b --type q8_0 --vocab "$assets/llama-vocab/ggml-vocab-phi-3.gguf" -o "$model" ||
            { [ "$DRY" = 1 ] || { note "speed: SKIPPED (pplug synth failed, see $OUT/synth.log)"; return; }; }
    fi
    note "speed model: $model (-ngl 0: weights in host memory; llama.cpp, like llama-bench, still sends large batches to the loaded GPU backend)"
    if step bench-pp-tg 120 "$PPLUG" bench -m "$model" -ngl 0,99 -p 512 -n 128 -r 3 -t "$THREADS" -o jsonl; then
        [ "$DRY" = 1 ] || while read -r l; do note "speed $l"; done < <(bench_rows "$OUT/bench-pp-tg.log")
    else
        [ "$DRY" = 1 ] || note "speed pp/tg: FAILED or timed out (see $OUT/bench-pp-tg.log)"
    fi
    local ngl
    for ngl in 0 99; do
        if step "bench-ttft-ngl$ngl" 90 "$PPLUG" bench -m "$model" -ngl "$ngl" -p 0 -n 0 -r 3 -t "$THREADS" \
            --profile "$ROOT/examples/profiles/lily.json"; then
            [ "$DRY" = 1 ] || while read -r l; do note "time to first token, -ngl $ngl, $l"; done < <(ttft_rows "$OUT/bench-ttft-ngl$ngl.log")
        else
            [ "$DRY" = 1 ] || note "time to first token, -ngl $ngl: FAILED or timed out (see $OUT/bench-ttft-ngl$ngl.log)"
        fi
    done
    "$PPLUG" train --help 2>/dev/null | grep -q -- '--n-gpu-layers' && train_ngl=(-ngl 99)
    step train-users 30 "$PPLUG" eval synth-users -o "$users" --users 12 --seed 1 || return
    if step train-step 150 "$PPLUG" train -m "$model" --task lamp7 --questions "$users/train_questions.json" \
        --outputs "$users/train_outputs.json" --epochs 1 --batch 4 -t "$THREADS" "${train_ngl[@]}" \
        --no-cache -o "$OUT/train.plug.gguf"; then
        [ "$DRY" = 1 ] || note "training: $(grep -o 'trained [0-9]* steps in [^;]*' "$OUT/train-step.log") ${train_ngl[*]:-(CPU: train has no -ngl)}"
    else
        [ "$DRY" = 1 ] || note "training: FAILED (see $OUT/train-step.log)"
    fi
}

# ---- main ---------------------------------------------------------------------------

prepare() {
    if [ ! -x "$PPLUG" ] || [ ! -d "$TB" ]; then
        if command -v go >/dev/null && [ "$DRY" = 0 ] && [ -z "${GPU_CHECK_NO_BUILD:-}" ]; then
            log "building bin/pplug and the test binaries (make gpu-check-prep)"
            make -C "$ROOT" gpu-check-prep >"$OUT/prep.log" 2>&1 || die "make gpu-check-prep failed (log: $OUT/prep.log)"
        fi
    fi
    need "$PPLUG" "make gpu-check-prep, or make build"
    detect_vulkan
}

print_machine() {
    log "GPU: ${GPU_INFO:-none (nvidia-smi not found)}"
    log "CUDA toolkit: ${NVCC:-none (no nvcc: the CUDA kernels are not built)}"
    log "Vulkan GPUs: ${VK_GPUS:-none}$([ -f "$ROOT/bin/libggml-vulkan.so" ] || echo ' (no bin/libggml-vulkan.so: make vulkan)')"
}

# prereqs lists what the plan needs and this machine lacks.
prereqs() {
    if [ -n "$NVCC" ] && [ -n "$GPU_NAME" ]; then
        need "$TB/kernels.test" "make gpu-check-prep"
    fi
    if [ -n "$VK_GPUS" ] || [ -f "$ROOT/build/gpu/lib/pplug/libggml-cuda.so" ]; then
        need "$TB/kernels-graph.test" "make gpu-check-prep"
    fi
    if [ -n "$VK_GPUS" ]; then
        need "$TB/llama.test" "make gpu-check-prep"
        need "$TB/pplug-vulkan.test" "make gpu-check-prep"
    fi
    return 0
}

plan() {
    local assets=$1
    if [ -n "$NVCC" ] && [ -n "$GPU_NAME" ]; then
        cuda_kernels
    elif [ -n "$GPU_NAME" ]; then
        note "cuda kernels: SKIPPED (no CUDA toolkit: nvcc not found)"
    fi
    [ -n "$VK_GPUS" ] && ggml_device Vulkan0 "$ROOT/bin"
    if [ -f "$ROOT/build/gpu/lib/pplug/libggml-cuda.so" ] && [ -n "$GPU_NAME" ]; then
        ggml_device CUDA0 "$ROOT/build/gpu/lib/pplug"
    fi
    speed "$assets"
}

write_summary() {
    {
        echo "================ pplug GPU check ================"
        echo "card         : ${GPU_INFO:-none}"
        echo "CUDA toolkit : ${NVCC:+$("$NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/nvcc \1/p')}${NVCC:-none}"
        echo "Vulkan GPUs  : ${VK_GPUS:-none}"
        echo "CPU threads  : $THREADS"
        echo
        printf '%s\n' "${SUMMARY[@]}"
        [ -f "$OUT/details.txt" ] && { echo; echo "measured (from the test logs):"; cat "$OUT/details.txt"; }
        echo
        echo "logs         : $OUT"
        echo "total time   : $(elapsed) s (budget ${BUDGET} s)"
        echo "result       : $([ "$FAILED" = 0 ] && echo PASS || echo FAIL)"
    } | tee "$OUT/summary.txt"
}

main() {
    mkdir -p "$OUT" || die "cannot create $OUT"
    rm -f "$OUT/details.txt"
    detect_nvidia
    detect_nvcc
    prepare
    print_machine
    if [ -z "$GPU_NAME" ] && [ -z "$VK_GPUS" ]; then
        log "SKIP: no GPU on this machine (nvidia-smi: ${GPU_INFO:-not found}; Vulkan GPUs: none); nothing to check"
        [ "$REQUIRE" = 1 ] && exit 1
        exit 0
    fi
    local assets
    assets=$(assets_dir)
    [ -n "$assets" ] || MISSING+=("stories260K.gguf and llama-vocab/ (set PPLUG_ASSETS)")
    prereqs
    if [ "$DRY" = 1 ]; then
        log "plan (dry run: nothing runs):"
        plan "${assets:-\$PPLUG_ASSETS}"
        [ "${#MISSING[@]}" -gt 0 ] && log "missing: $(printf '%s; ' "${MISSING[@]}")"
        exit 0
    fi
    [ "${#MISSING[@]}" -gt 0 ] && die "missing: $(printf '%s; ' "${MISSING[@]}")"
    export PPLUG_ASSETS=$assets # for the test binaries
    plan "$assets"
    write_summary
    [ "$FAILED" = 0 ]
}

main
