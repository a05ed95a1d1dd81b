#!/usr/bin/env bash
# The CPU engine against llama.cpp as its own build makes it. In one run, for
# each condition (quiet, then with BUSY processes spinning on the CPUs), it
# runs the C baseline (llama-cbench over llama.cpp's CMake build with OpenMP:
# `make cpu-baseline`) and `pplug bench`, one after the other, with the same
# tests, and prints tokens/s and the ratio pplug / baseline per test and
# condition. `tg N (C loop)` is pplug's plain C loop inside pplug's own build.
#
#   scripts/bench-cpu.sh MODEL [-p 512] [-n 64] [-t 2] [-r 5] [--busy 2]
#
# Environment: PPLUG (default bin/pplug), CBENCH (default: the path that
# `make cpu-baseline-path` prints), OUT (folder for the raw JSONL and logs;
# default a new temporary folder, kept and printed).
# Exit status: 0, 1 when a tool is missing or a benchmark fails, 2 for usage.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: scripts/bench-cpu.sh MODEL [-p 512] [-n 64] [-t 2] [-r 5] [--busy 2]" >&2
  exit 2
}

die() {
  echo "bench-cpu: $*" >&2
  exit 1
}

# whole NAME VALUE MIN: VALUE must be a whole number >= MIN.
whole() {
  [[ $2 =~ ^[0-9]{1,9}$ ]] && (($2 >= $3)) || { echo "bench-cpu: $1 $2: want a whole number >= $3" >&2; usage; }
}

parse_args() {
  model="" np=512 ng=64 threads=2 reps=5 nbusy=2
  while (($#)); do
    case $1 in
      -p | -n | -t | -r | --busy) [ $# -ge 2 ] || { echo "bench-cpu: $1 needs a value" >&2; usage; } ;;&
      -p) whole -p "$2" 0; np=$2; shift 2 ;;
      -n) whole -n "$2" 0; ng=$2; shift 2 ;;
      -t) whole -t "$2" 1; threads=$2; shift 2 ;;
      -r) whole -r "$2" 1; reps=$2; shift 2 ;;
      --busy) whole --busy "$2" 1; nbusy=$2; shift 2 ;;
      -h | --help) usage ;;
      -*) echo "bench-cpu: unknown option $1" >&2; usage ;;
      *) [ -z "$model" ] || { echo "bench-cpu: one MODEL only (got $model and $1)" >&2; usage; }; model=$1; shift ;;
    esac
  done
  [ -n "$model" ] || { echo "bench-cpu: no MODEL given (a GGUF file)" >&2; usage; }
  ((np + ng > 0)) || { echo "bench-cpu: nothing to run: -p and -n are both 0" >&2; usage; }
}

find_tools() {
  [ -f "$model" ] || die "model $model not found (a GGUF file; bin/pplug synth makes shaped ones)"
  PPLUG=${PPLUG:-bin/pplug}
  [ -x "$PPLUG" ] || die "$PPLUG not found: run 'make build' (or set PPLUG)"
  CBENCH=${CBENCH:-$(make -s --no-print-directory cpu-baseline-path)}
  [ -x "$CBENCH" ] || die "the C baseline $CBENCH is not built: run 'make cpu-baseline' (10-25 minutes on 2 cores; or set CBENCH)"
  OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/bench-cpu.XXXXXX")}
  mkdir -p "$OUT"
}

busy_pids=()
stop_busy() {
  local pid
  for pid in "${busy_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  busy_pids=()
}

# spin is a busy loop (shell arithmetic) that ends by itself once the
# script ($1) is gone, even if the script was killed without its trap.
spin='i=0; while :; do i=$((i + 1)); if [ $i -ge 200000 ]; then kill -0 "$1" 2>/dev/null || exit 0; i=0; fi; done'

start_busy() {
  local i
  for ((i = 0; i < nbusy; i++)); do
    sh -c "$spin" spin $$ &
    busy_pids+=($!)
  done
  sleep 1 # let them take their share before the first test
}

# run NAME LOG CMD...: runs a benchmark, its JSONL to $OUT/NAME.jsonl.
run() {
  local name=$1 log=$OUT/$1.log
  shift
  echo "bench-cpu: $name: $*" >&2
  if ! "$@" >"$OUT/$name.jsonl" 2>"$log"; then
    tail -n 20 "$log" >&2
    die "$name failed (log: $log)"
  fi
}

# measure COND: the baseline, then pplug, under the current load.
measure() {
  local cond=$1
  echo "bench-cpu: $cond: load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')" >&2
  run "$cond-baseline" "$CBENCH" -m "$model" -p "$np" -n "$ng" -t "$threads" -r "$reps"
  run "$cond-pplug" "$PPLUG" bench -m "$model" -o jsonl -p "$np" -n "$ng" -t "$threads" -r "$reps"
}

# table prints tokens/s per condition and test, pplug against the baseline
# (pplug's "tg N (C loop)" row against the baseline's tg N).
table() {
  awk -v conds="$*" '
    function field(line, key,    m) {
      if (match(line, "\"" key "\": *\"[^\"]*\"")) { m = substr(line, RSTART, RLENGTH); sub(/^[^:]*: *"/, "", m); sub(/"$/, "", m); return m }
      if (match(line, "\"" key "\": *[-0-9.eE+]+")) { m = substr(line, RSTART, RLENGTH); sub(/^[^:]*: */, "", m); return m }
      return ""
    }
    {
      n = split(FILENAME, parts, "/"); tag = parts[n]; sub(/\.jsonl$/, "", tag)
      split(tag, ct, "-"); cond = ct[1]; tool = ct[2]
      test = field($0, "test"); base = test; sub(/ \(C loop\)$/, "", base)
      if (test == "") next
      avg[cond, tool, test] = field($0, "avg_ts"); sd[cond, tool, test] = field($0, "stddev_ts")
      if (!((cond, test) in seen)) { seen[cond, test] = 1; order[cond, ++cnt[cond]] = test; basis[cond, test] = base }
    }
    END {
      printf "%-10s %-16s %24s %24s %10s\n", "condition", "test", "baseline t/s", "pplug t/s", "pplug/base"
      nc = split(conds, cl, " ")
      for (c = 1; c <= nc; c++) {
        cond = cl[c]
        for (i = 1; i <= cnt[cond]; i++) {
          test = order[cond, i]; b = basis[cond, test]
          if (!((cond, "pplug", test) in avg) || !((cond, "baseline", b) in avg)) continue
          bv = avg[cond, "baseline", b]; pv = avg[cond, "pplug", test]
          printf "%-10s %-16s %12.2f +/- %7.2f %12.2f +/- %7.2f %10s\n", cond, test, bv, sd[cond, "baseline", b], pv, sd[cond, "pplug", test], (bv > 0 ? sprintf("%.2fx", pv / bv) : "-")
        }
      }
    }' $(for c in "$@"; do echo "$OUT/$c-baseline.jsonl" "$OUT/$c-pplug.jsonl"; done)
}

main() {
  parse_args "$@"
  find_tools
  trap stop_busy EXIT
  trap 'exit 130' INT TERM
  echo "bench-cpu: $model, -p $np -n $ng -t $threads -r $reps; baseline $CBENCH; pplug $PPLUG; raw results in $OUT" >&2
  measure quiet
  start_busy
  measure "busy$nbusy"
  stop_busy
  table quiet "busy$nbusy" | tee "$OUT/table.txt"
}

main "$@"
