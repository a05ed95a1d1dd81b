#!/usr/bin/env bash
# Measures what -march=native buys: builds the llama package's benchmarks
# twice (the Makefile's default flags and PORTABLE=1), then runs the same
# generation benchmark with each, back to back, on a shape-realistic
# random-weight model (qwen2-0.5b shape, Q8_0; written once to $TMPDIR).
#
#   scripts/bench-march.sh [benchmark regexp] [benchtime]
#
# The first run compiles ggml once per flag set (a few minutes each).
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${1:-'GoVsC/qwen2-0.5b-q8_0'}
benchtime=${2:-3x}
out=${TMPDIR:-/tmp}/pplug-bench-march
mkdir -p "$out"
make -s deps >/dev/null
for mode in native portable; do
  portable=0; [ "$mode" = portable ] && portable=1
  flags=$(make -s --no-print-directory PORTABLE=$portable -f Makefile -f - print-cflags <<'MK'
print-cflags: ; @echo "$(CGO_CFLAGS)"
MK
)
  echo "== building ($mode: CGO_CFLAGS=$flags)" >&2
  CGO_CPPFLAGS=-DNDEBUG CGO_CFLAGS="$flags" CGO_CXXFLAGS="$flags" go test -c -o "$out/llama-$mode.test" ./llama/
done
for mode in native portable; do
  echo "== $mode"
  (cd llama && "$out/llama-$mode.test" -test.run '^$' -test.bench "$bench" -test.benchtime "$benchtime") | grep -E '^Benchmark'
done
