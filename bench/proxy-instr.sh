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
BINS=()
for b in "$@"; do BINS+=("$(realpath "$b")"); done
go build -o "$OUT/reqcount" ./bench/cmd/reqcount

one() { # one BIN TAG: prints instructions per request
  local bin=$1 tag=$2 bport port bpid pid f ir i
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
  for ((i = 0; i < 600; i++)); do
    "$OUT/reqcount" -addr "127.0.0.1:$port" -c 1 -n 1 >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || die "proxy exited: $(tail -3 "$OUT/proxy.$tag.log")"
    sleep 0.1
  done
  "$OUT/reqcount" -addr "127.0.0.1:$port" -c "$C" -n 200 >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  "$OUT/reqcount" -addr "127.0.0.1:$port" -c "$C" -n "$N" >/dev/null
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  stop_pid "$pid" 20
  stop_pid "$bpid" 10
  # The dump taken with -d is the newest file with a numeric suffix.
  f=$(ls -t "$OUT/cg.$tag".* | grep -E '\.[0-9]+\.[0-9]+$' | head -1 || true)
  [ -n "$f" ] || f=$(ls -t "$OUT/cg.$tag".* | head -1)
  ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$f")
  [ -n "$ir" ] || die "no total in $f"
  awk -v ir="$ir" -v n=$((C * N)) 'BEGIN {printf "%.0f\n", ir / n}'
}

echo "# warren proxy under callgrind (flags: ${PROXY_FLAGS:-none}); $C connections x $N requests a run; $ROUNDS rounds; load $(cut -d' ' -f1-3 /proc/loadavg)"
k=${#BINS[@]}
for ((r = 0; r < ROUNDS; r++)); do
  for ((i = 0; i < k; i++)); do
    j=$(((i + r) % k))
    v=$(one "${BINS[$j]}" "b$j.r$r")
    echo "round $r bin $j ${BINS[$j]} instructions/request $v" | tee -a "$OUT/runs"
  done
done
base=
for ((j = 0; j < k; j++)); do
  m=$(awk -v j="$j" '$4 == j {print $NF}' "$OUT/runs" | median)
  [ -z "$base" ] && base=$m
  awk -v j="$j" -v b="${BINS[$j]}" -v m="$m" -v a="$base" 'BEGIN {printf "bin %d %s: median %.0f instructions/request, %.4fx bin 0\n", j, b, m, m / a}'
done
echo "# load $(cut -d' ' -f1-3 /proc/loadavg)"
