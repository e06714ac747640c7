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
# profiles of nodes A and C over the measurement window, their allocation
# profiles and the client's CPU profile into the logs, and prints every
# process's context switches and system calls per message (perf stat);
# WARREN_BIN and MQTTRT_BIN use those binaries instead of building the
# tree's (an A/B against another commit in one lock hold); SERVE_EXTRA
# adds flags to every node's `warren serve` (SERVE_EXTRA="-mqtt-bridge-max-subjects 100":
# node C follows ">" instead of its N subjects).
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
WARREN_BIN=${WARREN_BIN:-}
MQTTRT_BIN=${MQTTRT_BIN:-}
SERVE_EXTRA=${SERVE_EXTRA:-}

PROG=mqtt-xnode
# shellcheck source=bench/lib.sh
. bench/lib.sh
[ -r /proc/self/status ] || die "needs Linux /proc"
[ -z "$PERF" ] || need_cmd perf:linux-perf
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
if [ -n "$WARREN_BIN" ]; then cp "$WARREN_BIN" "$BIN/warren"; else go build -o "$BIN/warren" ./cmd/warren; fi
if [ -n "$MQTTRT_BIN" ]; then cp "$MQTTRT_BIN" "$BIN/mqttrt"; else go build -o "$BIN/mqttrt" ./bench/cmd/mqttrt; fi
LOGDIR=$OUT/logs/mqtt-xnode-$(date +%Y%m%d-%H%M%S)
mkdir -p "$LOGDIR"
SECRET=bench-xnode-secret-$$-0123456789abcdefghij
TOKEN=$("$BIN/warren" token -device bench -role service -jwt-secret "$SECRET")

echo "mqtt-xnode: N=$N RATE=$RATE QOS=$QOS RUNS=$RUNS DURATION=${DURATION}s SIZE=$SIZE${SERVE_EXTRA:+ SERVE_EXTRA=$SERVE_EXTRA}"
echo "  $(machine_line)"
echo "  at $(git rev-parse --short HEAD 2>/dev/null || echo unknown); logs in $LOGDIR"

declare -A MQTT CL NPID ADM
for run in $(seq 1 "$RUNS"); do
  for n in a b c; do CL[$n]=$(free_port); done
  for n in a b c; do
    routes=
    for o in a b c; do [ "$o" = "$n" ] || routes="${routes:+$routes,}nats://127.0.0.1:${CL[$o]}"; done
    MQTT[$n]=$(free_port)
    ADM[$n]=$(free_port)
    mkdir -p "$LOGDIR/data-$n"
    # shellcheck disable=SC2086 # SERVE_EXTRA is split into flags
    "$BIN/warren" serve -node "$n" -addr "127.0.0.1:$(free_port)" -api "127.0.0.1:$(free_port)" \
      -admin "127.0.0.1:${ADM[$n]}" -mqtt "127.0.0.1:${MQTT[$n]}" -nats-listen "127.0.0.1:$(free_port)" \
      -nats-cluster "127.0.0.1:${CL[$n]}" -nats-routes "$routes" -jwt-secret "$SECRET" \
      -data "$LOGDIR/data-$n" -log-level warn $SERVE_EXTRA >"$LOGDIR/node-$n-$run.log" 2>&1 &
    NPID[$n]=$!
    PIDS+=("${NPID[$n]}")
  done
  for n in a b c; do wait_port "${MQTT[$n]}" "${NPID[$n]}" "$LOGDIR/node-$n-$run.log"; done
  sleep 3 # routes connect
  c0=0
  for n in a b c; do c0=$((c0 + $(cpu_ticks "${NPID[$n]}"))); done
  clog=$LOGDIR/client-$run.log
  timeout $((WARMUP + DURATION + 120)) "$BIN/mqttrt" -addr "127.0.0.1:${MQTT[a]}" -sub-addr "127.0.0.1:${MQTT[c]}" \
    -password "$TOKEN" -n "$N" -qos "$QOS" -rate "$RATE" -size "$SIZE" -warmup "${WARMUP}s" -duration "${DURATION}s" \
    -server-pid "${NPID[a]}" -node-pids "${NPID[a]},${NPID[b]},${NPID[c]}" \
    ${PERF:+-cpuprofile "$LOGDIR/client-$run.pprof"} >"$clog" 2>&1 &
  tpid=$!
  PIDS+=("$tpid")
  if [ -n "$PERF" ]; then
    # Inside the measurement window (the clients connect in about a
    # second): CPU profiles of nodes A and C, and the context switches and
    # system calls of every process, per message at RATE.
    sleep $((WARMUP + 1))
    win=$((DURATION - 2))
    cpid=$(pgrep -P "$tpid" | head -n 1)
    for n in a c; do
      perf record -q -F 499 -g -o "$LOGDIR/perf-$n-$run.data" -p "${NPID[$n]}" -- sleep "$win" >/dev/null 2>&1 &
    done
    for n in a b c client; do
      p=${NPID[$n]:-$cpid}
      perf stat -x, -e context-switches,raw_syscalls:sys_enter -o "$LOGDIR/stat-$n-$run.csv" -p "$p" -- sleep "$win" >/dev/null 2>&1 &
    done
  fi
  wait "$tpid" || true
  unset 'PIDS[-1]'
  if [ -n "$PERF" ]; then
    for n in a c; do # what the nodes allocated, since they started
      curl -s -o "$LOGDIR/allocs-$n-$run.pprof" "http://127.0.0.1:${ADM[$n]}/debug/pprof/allocs" || true
    done
    for n in a b c client; do
      awk -F, -v n="$n" -v r="$run" -v m="$(awk -v r="$RATE" -v w="$win" 'BEGIN {print r * w}')" \
        '$3 == "context-switches" {cs = $1} $3 == "raw_syscalls:sys_enter" {sc = $1}
         END {printf "  run %d: %-6s per message: %.2f context switches, %.2f system calls\n", r, n, cs / m, sc / m}' \
        "$LOGDIR/stat-$n-$run.csv"
    done
  fi
  c1=0
  for n in a b c; do c1=$((c1 + $(cpu_ticks "${NPID[$n]}"))); done
  for n in a b c; do stop_pid "${NPID[$n]}" 30; done
  PIDS=()
  line=$(grep '^{' "$clog" | tail -n 1)
  [ -n "$line" ] || { cat "$clog" >&2; die "run $run: no result"; }
  echo "  run $run: $line"
  echo "  run $run: CPU of the three nodes over warm-up + measurement: $(awk -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f s", t / hz}')"
done
