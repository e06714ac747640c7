#!/usr/bin/env bash
# bench/instr.sh BIN_A [BIN_B ...] — user-space instructions per HTTP request of
# `warren echo`, counted by valgrind's callgrind: a hot-path check that does
# not depend on the machine's neighbours (CPU-time A/Bs on this shared VM move
# ±5 % on nine pairs, §84; this VM exposes no hardware counters to perf).
#
# For each round and each binary (order rotating): `warren echo` under
# callgrind, a warm-up of C x 200 keep-alive requests, the counters zeroed,
# exactly C x N requests (bench/cmd/reqcount, every answer checked), a dump.
# Instructions per request = the dump's total ÷ (C x N). The kernel's work is
# not counted (it is most of a request's CPU: §36, §84), nor anything that
# costs time without instructions (cache, layout), so use it beside bench/ab.sh,
# not instead of it.
#
# Environment: ROUNDS (3), N (3000), C (16), OUT (bench/out/instr-<time>).
# Output: one line per run, then per binary the median and its ratio to the first.
set -euo pipefail
PROG=instr.sh
[ $# -ge 1 ] || { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
BINS=()
for b in "$@"; do BINS+=("$(realpath "$b")"); done # before the cd: relative paths are the caller's
cd "$(dirname "$0")/.."
. bench/lib.sh
need_cmd valgrind callgrind_control:valgrind
ROUNDS=${ROUNDS:-3} N=${N:-3000} C=${C:-16}
OUT=${OUT:-bench/out/instr-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
go build -o "$OUT/reqcount" ./bench/cmd/reqcount

one() { # one BIN TAG: prints instructions per request
  local bin=$1 tag=$2 port pid
  port=$(free_port)
  rm -f "$OUT/cg.$tag".*
  GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind --cache-sim=no --branch-sim=no \
    --callgrind-out-file="$OUT/cg.$tag.%p" \
    "$bin" echo -addr "127.0.0.1:$port" -admin "" >"$OUT/server.$tag.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  callgrind_per_request "$port" "$pid" "$tag" "$OUT/server.$tag.log"
}

echo "# warren echo under callgrind; $C connections x $N requests a run; $ROUNDS rounds; load $(cut -d' ' -f1-3 /proc/loadavg)"
callgrind_rounds
echo "# load $(cut -d' ' -f1-3 /proc/loadavg)"
