#!/usr/bin/env bash
# tls-ws-echo.sh — server CPU per WebSocket echo message over TLS against
# the same server in plain text, in the same run: warren echo (GET /ws
# echoes on the loops) with and without -tls-cert, driven by warren load
# (ws:// or wss://, open loop) which reads the server's CPU from /proc.
#
#   flock /tmp/warren-bench.lock bench/tls-ws-echo.sh
#   N=2000 RPS=5000 RUNS=1 bench/tls-ws-echo.sh
#   MODES="plain tls tls12" bench/tls-ws-echo.sh
#
# Modes: plain (ws://), tls (wss://, TLS 1.3), tls12 (wss://, the server
# limited to TLS 1.2 with -tls-max-version 1.2).
#
# Environment: N (15000 connections), RATE (connects/s in the ramp, 2000),
# RPS (10000 messages/s in all), D (15s of traffic), MSG (32 bytes), RUNS
# (3), MODES ("plain tls"), OUT (bench/out). Linux only.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-15000}
RATE=${RATE:-2000}
RPS=${RPS:-10000}
D=${D:-15s}
MSG=${MSG:-32}
RUNS=${RUNS:-3}
MODES=${MODES:-"plain tls"}
OUT=${OUT:-bench/out}
PROG=tls-ws-echo
BIN=$OUT/$PROG
# shellcheck source=bench/lib.sh
. bench/lib.sh
mkdir -p "$BIN"
go build -o "$BIN/warren" ./cmd/warren
case $OUT in /*) LOGDIR=$OUT ;; *) LOGDIR=$(pwd)/$OUT ;; esac
LOGDIR=$LOGDIR/logs/tls-ws-echo-$(date +%Y%m%d-%H%M%S)
mkdir -p "$LOGDIR"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -keyout "$LOGDIR/key.pem" -out "$LOGDIR/cert.pem" >/dev/null 2>&1 || die "openssl could not make a certificate"
RESULTS=$LOGDIR/results.tsv
printf 'mode\trun\tmessages\tcpu_us_per_msg\tp50_ms\tp99_ms\n' >"$RESULTS"
echo "tls-ws-echo: N=$N RPS=$RPS D=$D MSG=$MSG RUNS=$RUNS"
echo "  $(machine_line)"
echo "  at $(git rev-parse --short HEAD 2>/dev/null || echo unknown); logs in $LOGDIR"
read -r -a order <<<"$MODES"
for ((run = 1; run <= RUNS; run++)); do
  for ((j = 0; j < ${#order[@]}; j++)); do
    m=${order[$(((j + run - 1) % ${#order[@]}))]}
    log=$LOGDIR/$m-$run.log
    args=(echo -addr 127.0.0.1:0 -admin "")
    scheme=ws
    if [ "$m" = tls ] || [ "$m" = tls12 ]; then
      args+=(-tls-cert "$LOGDIR/cert.pem" -tls-key "$LOGDIR/key.pem" -tls-rate -1 -tls-rate-per-ip -1 -tls-ban-threshold -1)
      scheme=wss
    fi
    if [ "$m" = tls12 ]; then args+=(-tls-max-version 1.2); fi
    "$BIN/warren" "${args[@]}" >"$log" 2>&1 &
    spid=$!
    PIDS+=("$spid")
    addr=
    for ((i = 0; i < 100; i++)); do
      addr=$(grep -oE 'warren echo listening" addr=[0-9.]+:[0-9]+' "$log" | sed 's/.*addr=//' || true)
      [ -n "$addr" ] && break
      sleep 0.1
    done
    [ -n "$addr" ] || die "$m: no address"
    "$BIN/warren" load -url "$scheme://$addr/ws" -insecure -conns "$N" -rate "$RATE" -rps "$RPS" -duration "$D" \
      -msg-size "$MSG" -src 60 -server-pid "$spid" -quiet -json "$LOGDIR/$m-$run.json" >"$LOGDIR/$m-$run.load.log" 2>&1 || true
    stop_pid "$spid" 20
    PIDS=()
    read -r msgs cpu p50 p99 < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
s = r.get("server") or {}
print(r.get("requests", 0), round(s.get("cpu_per_request_us", 0), 2), r["latency"].get("p50_ms", "-"), r["latency"].get("p99_ms", "-"))' "$LOGDIR/$m-$run.json")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$m" "$run" "$msgs" "$cpu" "$p50" "$p99" >>"$RESULTS"
    printf '  %-5s run %d: %8s messages  server CPU %6s µs/msg  p50 %s ms  p99 %s ms\n' "$m" "$run" "$msgs" "$cpu" "$p50" "$p99"
  done
done
echo
echo "medians over $RUNS run(s):"
for m in $MODES; do
  printf '  %-5s %8s µs/msg\n' "$m" "$(awk -F'\t' -v m="$m" 'NR > 1 && $1 == m {print $4}' "$RESULTS" | median)"
done
