#!/usr/bin/env bash
# mqtt-xnode.sh — MQTT latency across gateway nodes (issue 12's cross-node
# target: publish on node A → subscriber on node C, p99 < 10 ms at 10,000
# msg/s). Three `warren serve` nodes, each with its embedded NATS server
# clustered with the others' through routes (-nats-cluster, -nats-routes),
# MQTT on each; bench/cmd/mqttrt -sub-addr: N clients each publish to a
# topic of their own on node A and receive it through a second connection
# subscribed on node C. Latency is publish → receipt at the subscriber
# (one clock: the same machine).
#
#   bench/mqtt-xnode.sh                       500 clients, 10,000 msg/s, QoS 0, 15 s
#   N=1000 RATE=20000 QOS=1 DURATION=30 bench/mqtt-xnode.sh
#
# Environment: N (500), RATE (10000), QOS (0), RUNS (1), WARMUP (3),
# DURATION (15), SIZE (64), OUT (bench/out); PERF=1 records `perf record -g`
# profiles of nodes A and C over the measurement window into the logs.
# Linux only.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-500}
RATE=${RATE:-10000}
QOS=${QOS:-0}
RUNS=${RUNS:-1}
WARMUP=${WARMUP:-3}
DURATION=${DURATION:-15}
SIZE=${SIZE:-64}
OUT=${OUT:-bench/out}
PERF=${PERF:-}

PROG=mqtt-xnode
# shellcheck source=bench/lib.sh
. bench/lib.sh
[ -r /proc/self/status ] || die "needs Linux /proc"
ulimit -n "$(ulimit -Hn)"
wait_port() { # wait_port PORT PID LOG
  local i
  for ((i = 0; i < 300; i++)); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 1).close()" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { cat "$3" >&2; die "node exited"; }
    sleep 0.1
  done
  die "port $1 not open"
}

BIN=$OUT/$PROG
mkdir -p "$BIN"
echo "building into $BIN ..."
go build -o "$BIN/warren" ./cmd/warren
go build -o "$BIN/mqttrt" ./bench/cmd/mqttrt
LOGDIR=$OUT/logs/mqtt-xnode-$(date +%Y%m%d-%H%M%S)
mkdir -p "$LOGDIR"
SECRET=bench-xnode-secret-$$-0123456789abcdefghij
TOKEN=$("$BIN/warren" token -device bench -role service -jwt-secret "$SECRET")

echo "mqtt-xnode: N=$N RATE=$RATE QOS=$QOS RUNS=$RUNS DURATION=${DURATION}s SIZE=$SIZE"
echo "  $(machine_line)"
echo "  at $(git rev-parse --short HEAD 2>/dev/null || echo unknown); logs in $LOGDIR"

declare -A MQTT CL NPID
for run in $(seq 1 "$RUNS"); do
  for n in a b c; do CL[$n]=$(free_port); done
  for n in a b c; do
    routes=
    for o in a b c; do [ "$o" = "$n" ] || routes="${routes:+$routes,}nats://127.0.0.1:${CL[$o]}"; done
    MQTT[$n]=$(free_port)
    mkdir -p "$LOGDIR/data-$n"
    "$BIN/warren" serve -node "$n" -addr "127.0.0.1:$(free_port)" -api "127.0.0.1:$(free_port)" \
      -admin "127.0.0.1:$(free_port)" -mqtt "127.0.0.1:${MQTT[$n]}" -nats-listen "127.0.0.1:$(free_port)" \
      -nats-cluster "127.0.0.1:${CL[$n]}" -nats-routes "$routes" -jwt-secret "$SECRET" \
      -data "$LOGDIR/data-$n" -log-level warn >"$LOGDIR/node-$n-$run.log" 2>&1 &
    NPID[$n]=$!
    PIDS+=("${NPID[$n]}")
  done
  for n in a b c; do wait_port "${MQTT[$n]}" "${NPID[$n]}" "$LOGDIR/node-$n-$run.log"; done
  sleep 3 # routes connect
  c0=0
  for n in a b c; do c0=$((c0 + $(cpu_ticks "${NPID[$n]}"))); done
  clog=$LOGDIR/client-$run.log
  if [ -n "$PERF" ]; then # profile the nodes over the measurement window
    (sleep "$WARMUP"; for n in a c; do
      perf record -q -F 499 -g -o "$LOGDIR/perf-$n-$run.data" -p "${NPID[$n]}" -- sleep "$DURATION" >/dev/null 2>&1 &
    done; wait) &
    perfpid=$!
  fi
  timeout $((WARMUP + DURATION + 120)) "$BIN/mqttrt" -addr "127.0.0.1:${MQTT[a]}" -sub-addr "127.0.0.1:${MQTT[c]}" \
    -password "$TOKEN" -n "$N" -qos "$QOS" -rate "$RATE" -size "$SIZE" -warmup "${WARMUP}s" -duration "${DURATION}s" \
    -server-pid "${NPID[a]}" -node-pids "${NPID[a]},${NPID[b]},${NPID[c]}" \
    ${PERF:+-cpuprofile "$LOGDIR/client-$run.pprof"} >"$clog" 2>&1 || true
  [ -z "$PERF" ] || wait "$perfpid" || true
  c1=0
  for n in a b c; do c1=$((c1 + $(cpu_ticks "${NPID[$n]}"))); done
  for n in a b c; do stop_pid "${NPID[$n]}" 30; done
  PIDS=()
  line=$(grep '^{' "$clog" | tail -n 1)
  [ -n "$line" ] || { cat "$clog" >&2; die "run $run: no result"; }
  echo "  run $run: $line"
  echo "  run $run: CPU of the three nodes over warm-up + measurement: $(awk -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f s", t / hz}')"
done
