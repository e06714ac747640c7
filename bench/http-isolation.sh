#!/usr/bin/env bash
# HTTP isolation targets (issue: HTTP/1.1 server), against `warren echo`:
#  - slowloris: 1,500 connections trickle headers; ordinary GET / keeps
#    p99 < 50 ms and every slow connection is cut at the header timeout (408).
#  - blocking: 64 requests sit in GET /delay?ms=2000; GET / keeps p99 < 2 ms.
#
#   bench/http-isolation.sh      # HEADER_TIMEOUT=10s DURATION=15s PAIRS=3
set -euo pipefail
cd "$(dirname "$0")/.."
HEADER_TIMEOUT=${HEADER_TIMEOUT:-10s}
DURATION=${DURATION:-15s}
OUT=bench/out
mkdir -p "$OUT"
go build -o "$OUT/warren" ./cmd/warren
go build -o "$OUT/httpstress" ./bench/cmd/httpstress
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true' EXIT
start() {
  "$OUT/warren" echo -addr 127.0.0.1:0 -admin 127.0.0.1:0 -header-timeout "$HEADER_TIMEOUT" "$@" >"$OUT/isolation.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    addr=$(grep -o 'addr=[^ ]*' "$OUT/isolation.log" | head -1 | cut -d= -f2 || true)
    [ -n "$addr" ] && return
    sleep 0.1
  done
  echo "server did not start"; cat "$OUT/isolation.log"; exit 1
}
start
echo "slowloris: $("$OUT/httpstress" -mode slowloris -addr "$addr" -header-timeout "$HEADER_TIMEOUT" -duration "$DURATION")"
kill "$pid"; wait "$pid" 2>/dev/null || true
start
# The probes' p99 on a 2-core machine is dominated by scheduling noise, so
# the blocking case alternates with a baseline without blockers (same
# server, same probes): the target is about what the blocked requests add.
PAIRS=${PAIRS:-3}
for i in $(seq 1 "$PAIRS"); do
  echo "baseline $i: $("$OUT/httpstress" -mode blocking -blockers 0 -addr "$addr" -duration "$DURATION")"
  echo "blocking $i: $("$OUT/httpstress" -mode blocking -addr "$addr" -duration "$DURATION")"
done
