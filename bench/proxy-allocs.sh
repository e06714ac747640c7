#!/usr/bin/env bash
# bench/proxy-allocs.sh BIN [PROXY_FLAGS...] — heap allocations and bytes per
# proxied request of `warren proxy` (go_memstats_mallocs_total and
# go_memstats_alloc_bytes_total on its admin listener, before and after a wrk
# run, divided by the requests wrk completed). A count that does not depend on
# the machine's neighbours, beside bench/proxy.sh's CPU per request
# (docs/benchmarks.md §94).
#
#   flock /tmp/warren-bench.lock bench/proxy-allocs.sh /tmp/warren -io-uring
#
# Setup as bench/proxy.sh's: `warren echo -loops 1` behind `warren proxy
# -loops 2 -max-idle-per-host 256`, wrk -t2 -c$CONNS, a 2 s warm-up, then
# $DURATION measured. Environment: DURATION (5s), CONNS (64).
set -euo pipefail
PROG=proxy-allocs.sh
[ $# -ge 1 ] || { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
need_cmd wrk curl
W=$(realpath "$1")
shift
DURATION=${DURATION:-5s}
CONNS=${CONNS:-64}

BPORT=$(free_port)
"$W" echo -addr "127.0.0.1:$BPORT" -admin "" -loops 1 >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$BPORT"
PPORT=$(free_port)
APORT=$(free_port)
"$W" proxy -listen "127.0.0.1:$PPORT" -admin "127.0.0.1:$APORT" -loops 2 \
  -upstream "http://127.0.0.1:$BPORT" -max-idle-per-host 256 "$@" >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$PPORT"
wait_port "$APORT"

wrk -t2 -c"$CONNS" -d2s "http://127.0.0.1:$PPORT/" >/dev/null
m0=$(port_metric "$APORT" go_memstats_mallocs_total)
b0=$(port_metric "$APORT" go_memstats_alloc_bytes_total)
out=$(wrk -t2 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$PPORT/")
m1=$(port_metric "$APORT" go_memstats_mallocs_total)
b1=$(port_metric "$APORT" go_memstats_alloc_bytes_total)
req=$(echo "$out" | grep -oE '[0-9]+ requests in' | awk '{print $1}')
[ -n "$req" ] && [ "$req" -gt 0 ] || die "wrk completed no request"
awk -v m="$((m1 - m0))" -v b="$((b1 - b0))" -v r="$req" -v w="$(basename "$W") $*" \
  'BEGIN {printf "%s: %d requests, %.3f allocations and %.1f bytes a request\n", w, r, m / r, b / r}'
