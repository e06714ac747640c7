#!/usr/bin/env bash
# Proxied idle WebSocket memory (issue 14): N WebSocket connections held
# idle through warren proxy to warren echo's GET /ws; reports the proxy's
# RSS per proxied connection (two sockets each: client side and backend
# side). Target: <= 2 KB.
#
#   flock /tmp/warren-bench.lock bench/proxy-ws-idle.sh     # N=5000 HOLD=10s
set -euo pipefail
cd "$(dirname "$0")/.."
PROG=bench/proxy-ws-idle.sh
N=${N:-5000}
HOLD=${HOLD:-10s}
OUT=bench/out/proxy
mkdir -p "$OUT"
# shellcheck source=bench/lib.sh
source bench/lib.sh
go build -o "$OUT/warren" ./cmd/warren
W="$(pwd)/$OUT/warren"
"$W" echo -addr 127.0.0.1:0 -admin "" -ws-ping-interval -1s >"$OUT/ws-backend.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q listening "$OUT/ws-backend.log" && break; sleep 0.1; done
BADDR=$(grep -o 'addr=[0-9.:]*' "$OUT/ws-backend.log" | head -1 | cut -d= -f2)
"$W" proxy -listen 127.0.0.1:0 -admin "" -upstream "http://$BADDR" -max-conns-per-host -1 -cb-max-connections -1 \
  -cb-max-requests -1 >"$OUT/ws-proxy.log" 2>&1 &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
for _ in $(seq 1 100); do grep -q 'proxy listening' "$OUT/ws-proxy.log" && break; sleep 0.1; done
PADDR=$(grep 'proxy listening' "$OUT/ws-proxy.log" | grep -o 'addr=[0-9.:]*' | cut -d= -f2)
base=$(rss_kb "$PROXY_PID")
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); $(machine_line)"
echo "# $N idle WebSocket connections through warren proxy to warren echo /ws; proxy RSS before: ${base} KiB"
"$W" load -url "ws://$PADDR/ws" -conns "$N" -rate 2000 -hold "$HOLD" -server-pid "$PROXY_PID" -json "$OUT/ws-idle.json" 2>&1 | tail -n 25 &
LOAD=$!
sleep "$(( ${HOLD%s} / 2 + N / 2000 + 1 ))"
held=$(rss_kb "$PROXY_PID")
wait "$LOAD" || true
awk -v b="$base" -v h="$held" -v n="$N" 'BEGIN {printf "proxy RSS with %d idle proxied WebSockets: %d KiB (+%d KiB): %.0f bytes per proxied connection (two sockets)\n", n, h, h - b, (h - b) * 1024 / n}'
