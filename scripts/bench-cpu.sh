#!/usr/bin/env bash
# The CPU engine against llama.cpp as its own build makes it. In one run, for
# each condition (quiet, then with BUSY processes spinning on the CPUs), it
# runs the C baseline (llama-cbench over llama.cpp's CMake build with OpenMP:
# `make cpu-baseline`) and `pplug bench` with the same tests, --rounds times
# each, alternating (baseline first in odd rounds, pplug first in even ones,
# so that a drifting load weighs on both alike), and prints per test and
# condition the median tokens/s of the rounds, the ratio pplug / baseline of
# the medians and the range of the rounds' own ratios. `tg N (C loop)` is
# pplug's plain C loop inside pplug's own build.
#
#   scripts/bench-cpu.sh MODEL [-p 512] [-n 64] [-t 2] [-r 5] [--busy 2] [--rounds 3]
#
# Environment: PPLUG (default bin/pplug), CBENCH (default: the path that
# `make cpu-baseline-path` prints), OUT (folder for the raw JSONL and logs;
# default a new temporary folder, kept and printed).
# Exit status: 0, 1 when a tool is missing or a benchmark fails, 2 for usage.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: scripts/bench-cpu.sh MODEL [-p 512] [-n 64] [-t 2] [-r 5] [--busy 2] [--rounds 3]" >&2
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
  model="" np=512 ng=64 threads=2 reps=5 nbusy=2 rounds=3
  while (($#)); do
    case $1 in
      -p | -n | -t | -r | --busy | --rounds) [ $# -ge 2 ] || { echo "bench-cpu: $1 needs a value" >&2; usage; } ;;&
      -p) whole -p "$2" 0; np=$2; shift 2 ;;
      -n) whole -n "$2" 0; ng=$2; shift 2 ;;
      -t) whole -t "$2" 1; threads=$2; shift 2 ;;
      -r) whole -r "$2" 1; reps=$2; shift 2 ;;
      --busy) whole --busy "$2" 1; nbusy=$2; shift 2 ;;
      --rounds) whole --rounds "$2" 1; rounds=$2; shift 2 ;;
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

# measure COND: the rounds of the baseline and pplug under the current load,
# their order alternating.
measure() {
  local cond=$1 r
  for ((r = 1; r <= rounds; r++)); do
    echo "bench-cpu: $cond round $r/$rounds: load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')" >&2
    if ((r % 2)); then
      baseline "$cond" "$r"
      pplug "$cond" "$r"
    else
      pplug "$cond" "$r"
      baseline "$cond" "$r"
    fi
  done
}

baseline() { run "$1-baseline-$2" "$CBENCH" -m "$model" -p "$np" -n "$ng" -t "$threads" -r "$reps"; }
pplug() { run "$1-pplug-$2" "$PPLUG" bench -m "$model" -o jsonl -p "$np" -n "$ng" -t "$threads" -r "$reps"; }

# table prints per condition and test the median tokens/s of the rounds of
# the baseline and of pplug (pplug's "tg N (C loop)" row against the
# baseline's tg N), with their spread (one round: the run's own standard
# deviation; more: the standard deviation of the rounds' figures), the ratio
# of the medians and the lowest and highest ratio of one round's pair.
# Portable awk (mawk): no asort.
table() {
  awk -v conds="$*" -v rounds="$rounds" '
    function field(line, key,    m) {
      if (match(line, "\"" key "\": *\"[^\"]*\"")) { m = substr(line, RSTART, RLENGTH); sub(/^[^:]*: *"/, "", m); sub(/"$/, "", m); return m }
      if (match(line, "\"" key "\": *[-0-9.eE+]+")) { m = substr(line, RSTART, RLENGTH); sub(/^[^:]*: */, "", m); return m }
      return ""
    }
    # stats fills med and sd from the values of key k for rounds 1..rounds;
    # returns 0 when a round lacks it.
    function stats(k,    i, j, n, v, x, s, q) {
      n = 0
      for (i = 1; i <= rounds; i++) {
        if (!((k, i) in avg)) return 0
        x = avg[k, i] + 0
        for (j = n; j > 0 && v[j] > x; j--) v[j + 1] = v[j]
        v[j + 1] = x; n++
      }
      med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
      if (n == 1) { sd = runsd[k, 1] + 0; return 1 }
      s = 0; for (i = 1; i <= n; i++) s += v[i]; s /= n
      q = 0; for (i = 1; i <= n; i++) q += (v[i] - s) ^ 2
      sd = sqrt(q / (n - 1))
      return 1
    }
    {
      n = split(FILENAME, parts, "/"); tag = parts[n]; sub(/\.jsonl$/, "", tag)
      split(tag, ct, "-"); cond = ct[1]; tool = ct[2]; round = ct[3]
      test = field($0, "test"); base = test; sub(/ \(C loop\)$/, "", base)
      if (test == "") next
      avg[cond SUBSEP tool SUBSEP test, round] = field($0, "avg_ts"); runsd[cond SUBSEP tool SUBSEP test, round] = field($0, "stddev_ts")
      if (!((cond, test) in seen)) { seen[cond, test] = 1; order[cond, ++cnt[cond]] = test; basis[cond, test] = base }
    }
    END {
      printf "%-10s %-16s %24s %24s %10s %14s\n", "condition", "test", "baseline t/s", "pplug t/s", "pplug/base", "rounds ratios"
      nc = split(conds, cl, " ")
      for (c = 1; c <= nc; c++) {
        cond = cl[c]
        for (i = 1; i <= cnt[cond]; i++) {
          test = order[cond, i]; b = basis[cond, test]
          kb = cond SUBSEP "baseline" SUBSEP b; kp = cond SUBSEP "pplug" SUBSEP test
          if (!stats(kb)) continue
          bv = med; bsd = sd
          if (!stats(kp)) continue
          pv = med; psd = sd
          lo = ""; hi = ""
          for (r = 1; r <= rounds; r++) {
            if (avg[kb, r] + 0 <= 0) continue
            x = avg[kp, r] / avg[kb, r]
            if (lo == "" || x < lo) lo = x
            if (hi == "" || x > hi) hi = x
          }
          printf "%-10s %-16s %12.2f +/- %7.2f %12.2f +/- %7.2f %10s %14s\n", cond, test, bv, bsd, pv, psd, (bv > 0 ? sprintf("%.2fx", pv / bv) : "-"), (lo == "" ? "-" : sprintf("%.2f-%.2f", lo, hi))
        }
      }
    }' $(for c in "$@"; do for ((r = 1; r <= rounds; r++)); do echo "$OUT/$c-baseline-$r.jsonl" "$OUT/$c-pplug-$r.jsonl"; done; done)
}

main() {
  parse_args "$@"
  find_tools
  trap stop_busy EXIT
  trap 'exit 130' INT TERM
  echo "bench-cpu: $model, -p $np -n $ng -t $threads -r $reps, $rounds rounds; baseline $CBENCH; pplug $PPLUG; raw results in $OUT" >&2
  measure quiet
  start_busy
  measure "busy$nbusy"
  stop_busy
  table quiet "busy$nbusy" | tee "$OUT/table.txt"
}

main "$@"
