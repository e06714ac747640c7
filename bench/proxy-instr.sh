#!/usr/bin/env bash
# bench/proxy-instr.sh BIN_A [BIN_B ...] — user-space instructions per proxied
# request of the `warren proxy` process, counted by valgrind's callgrind: the
# proxy-side twin of bench/instr.sh, a hot-path figure that does not depend on
# the machine's neighbours (CPU-time A/Bs on this VM move ±5 %).
#
# For each round and each binary (order rotating): `warren echo -loops 1` as
# the backend (outside valgrind), `warren proxy -loops 2 -upstream ...
# -max-idle-per-host 256 $PROXY_FLAGS` under callgrind, a warm-up of C x 200
# keep-alive requests through the proxy, the counters zeroed, exactly C x N
# requests (bench/cmd/reqcount, every answer checked), a dump. Instructions
# per request = the dump's total ÷ (C x N). Only the proxy's user space is
# counted; the kernel's TCP work (most of a request's CPU) is not.
#
# Environment: ROUNDS (3), N (2000), C (16), PROXY_FLAGS (none; valgrind does
# not support io_uring, so -io-uring is refused: the epoll path runs the same
# proxy and upstream code), OUT (bench/out/proxy-instr-<time>).
# Output: one line per run, then per binary the median and its ratio to the first.
set -euo pipefail
PROG=proxy-instr.sh
[ $# -ge 1 ] || { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
BINS=()
for b in "$@"; do BINS+=("$(realpath "$b")"); done # before the cd: relative paths are the caller's
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
need_cmd valgrind callgrind_control:valgrind
ROUNDS=${ROUNDS:-3} N=${N:-2000} C=${C:-16}
PROXY_FLAGS=${PROXY_FLAGS:-}
case " $PROXY_FLAGS " in
*" -io-uring "* | *" -io-uring=true "*) die "valgrind does not support io_uring; measure the epoll path (same proxy and upstream code)" ;;
esac
OUT=${OUT:-bench/out/proxy-instr-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
go build -o "$OUT/reqcount" ./bench/cmd/reqcount

one() { # one BIN TAG: prints instructions per request
  local bin=$1 tag=$2 bport port bpid pid
  bport=$(free_port)
  "$bin" echo -addr "127.0.0.1:$bport" -admin "" -loops 1 >"$OUT/backend.$tag.log" 2>&1 &
  bpid=$!
  PIDS+=("$bpid")
  wait_port "$bport"
  port=$(free_port)
  rm -f "$OUT/cg.$tag".*
  # shellcheck disable=SC2086 # PROXY_FLAGS is a list of flags
  GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind --cache-sim=no --branch-sim=no \
    --callgrind-out-file="$OUT/cg.$tag.%p" \
    "$bin" proxy -listen "127.0.0.1:$port" -admin "" -loops 2 \
    -upstream "http://127.0.0.1:$bport" -max-idle-per-host 256 $PROXY_FLAGS \
    >"$OUT/proxy.$tag.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  callgrind_per_request "$port" "$pid" "$tag" "$OUT/proxy.$tag.log"
  stop_pid "$bpid" 10
}

echo "# warren proxy under callgrind (flags: ${PROXY_FLAGS:-none}); $C connections x $N requests a run; $ROUNDS rounds; load $(cut -d' ' -f1-3 /proc/loadavg)"
callgrind_rounds
echo "# load $(cut -d' ' -f1-3 /proc/loadavg)"
