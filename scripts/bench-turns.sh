#!/usr/bin/env bash
# Time to first token at turn 1 and turn N of one conversation, with and
# without serve's prefix cache (issue 23): starts `pplug serve` on MODEL
# with a random plug (rows from the LLM itself) and one user (the example
# profile lily), then runs scripts/turnbench, which asks each turn for one
# token with cache_prompt true and false in alternation and prints the
# times and their ratios (all measured in this one run).
#
#   scripts/bench-turns.sh MODEL [-t 2] [--turns 10] [--words 55]
#
# Environment: PPLUG (default bin/pplug), OUT (folder for the plug, the
# database and the server log; default a new temporary folder, kept).
# Exit status: 0, 1 when the server or a request fails, 2 for usage.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  [[ $# -eq 0 ]] || echo "bench-turns: $*" >&2
  echo "usage: scripts/bench-turns.sh MODEL [-t 2] [--turns 10] [--words 55]" >&2
  exit 2
}
die() {
  echo "bench-turns: $*" >&2
  exit 1
}

[[ $# -ge 1 ]] || usage "no MODEL given"
model=$1
shift
threads=2 turns=10 words=55
while [[ $# -gt 0 ]]; do
  case $1 in
  -t | --turns | --words) ;;
  *) usage "unknown option $1" ;;
  esac
  [[ $# -ge 2 ]] || usage "$1 needs a value"
  [[ $2 =~ ^[0-9]{1,6}$ && $2 -ge 1 ]] || usage "$1 $2: want a whole number >= 1"
  case $1 in
  -t) threads=$2 ;;
  --turns) turns=$2 ;;
  --words) words=$2 ;;
  esac
  shift 2
done
[[ -f $model ]] || die "model $model not found"
pplug=${PPLUG:-bin/pplug}
[[ -x $pplug ]] || die "$pplug is missing: run make build (or set PPLUG)"
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
echo "bench-turns: files in $out" >&2

"$pplug" plug init -m "$model" -o "$out/plug.gguf" -t "$threads" >"$out/plug.log" 2>&1 || die "plug init failed: see $out/plug.log"
"$pplug" profile import --profiles "$out/users.db" --user lily --profile examples/profiles/lily.json >"$out/import.log" 2>&1 ||
  die "profile import failed: see $out/import.log"
port=$((20000 + RANDOM % 20000))
"$pplug" serve -m "$model" --plug "$out/plug.gguf" --profiles "$out/users.db" --port "$port" \
  -t "$threads" -np 1 --cache-slots 2 -c 8192 --cache-dir "$out/cache" >"$out/serve.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 600); do
  grep -q "listening on" "$out/serve.log" && break
  kill -0 "$server" 2>/dev/null || die "the server exited: see $out/serve.log"
  sleep 1
done
grep -q "listening on" "$out/serve.log" || die "the server did not start in 10 minutes: see $out/serve.log"
grep "listening on" "$out/serve.log" >&2
go run ./scripts/turnbench -url "http://127.0.0.1:$port" -user lily -turns "$turns" -words "$words"
