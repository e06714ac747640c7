#!/usr/bin/env bash
# mqtt-storm.sh — the reconnect storm of MQTT devices that reconnect by
# themselves: N devices held on `warren serve -procs GW_PROCS`, the gateway
# drained (SIGTERM) and started again on the same ports, and the time until
# every device is back online.
#
#   flock /tmp/warren-bench.lock bench/mqtt-storm.sh                  100,000 devices
#   N=20000 GW_PROCS=2 LOAD_PROCS=2 bench/mqtt-storm.sh                smaller
#
# Steps, each bounded in time:
#  1. builds warren; starts the gateway (-mqtt on a free loopback port) and
#     waits for its /readyz.
#  2. one `warren load -scenario devices -url mqtt://… -mqtt-reconnect
#     RECONNECT -procs LOAD_PROCS` run from SOURCES: ramp N devices at
#     RATE/s and keep them in a long traffic phase at RPS telemetry
#     messages a second; waits until the gateway counts N online and
#     samples the RSS of every gateway process (held − baseline) / N.
#  3. SIGTERM to the gateway (drain: MQTT 5.0 devices get DISCONNECT 139,
#     3.1.1 devices see the connection close), then the gateway started
#     again on the same ports. Every device retries after a random delay
#     below RECONNECT until it is back. Reports the time from the SIGTERM
#     and from the new gateway's readiness until N are online, the times
#     until 50, 90 and 99 % were (the whole curve in
#     OUT/mqtt-storm-online.tsv), and the peak RSS of every new gateway
#     process against MEM_BOUND.
#
# Environment: N (100000), GW_PROCS (6), LOAD_PROCS (6), SOURCES
# (127.0.2.1-127.0.2.16), RATE (5000), RPS (N/60), RECONNECT (10s),
# MEM_BOUND (512 MiB a process), LOAD_FLAGS (more warren load flags, such
# as "-mqtt-version 5 -qos 1"), OUT (bench/out). Linux only (it reads /proc).
# Every process it starts is stopped by pid.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100000}
GW_PROCS=${GW_PROCS:-6}
LOAD_PROCS=${LOAD_PROCS:-6}
SOURCES=${SOURCES:-127.0.2.1-127.0.2.16}
RATE=${RATE:-5000}
RPS=${RPS:-$((N / 60))}
RECONNECT=${RECONNECT:-10s}
MEM_BOUND=${MEM_BOUND:-$((512 << 20))}
OUT=${OUT:-bench/out}
read -r -a LOAD_FLAGS <<<"${LOAD_FLAGS:-}"

PROG=mqtt-storm
# shellcheck source=bench/lib.sh
. bench/lib.sh
[ -r /proc/self/status ] || die "needs Linux /proc"
[ $(((N + GW_PROCS - 1) / GW_PROCS)) -le 19000 ] || die "N=$N over GW_PROCS=$GW_PROCS: over the open-file limit"
[ $(((N + LOAD_PROCS - 1) / LOAD_PROCS)) -le 19000 ] || die "N=$N over LOAD_PROCS=$LOAD_PROCS: over the open-file limit"
gw_setup

DEV=$(free_port)
API=$(free_port)
ADM=$(free_port)
NATSP=$(free_port)
MQTTP=$(free_port)

GW_PID=
start_gateway() {
  WARREN_JWT_SECRET=$SECRET "$BIN/warren" serve -procs "$GW_PROCS" -addr "127.0.0.1:$DEV" -api "127.0.0.1:$API" \
    -admin "127.0.0.1:$ADM" -nats-listen "127.0.0.1:$NATSP" -mqtt "127.0.0.1:$MQTTP" -data "$DATA" -log-level warn \
    >>"$OUT/mqtt-storm-gateway.log" 2>&1 &
  GW_PID=$!
  PIDS+=("$GW_PID")
  gw_wait_ready "$OUT/mqtt-storm-gateway.log" 0.05
}
online() {
  curl -fsS "http://127.0.0.1:$ADM/metrics" 2>/dev/null |
    awk '/^warren_gateway_devices_online/ {s += $2} END {printf "%d\n", s}'
}
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }

echo "# mqtt-storm.sh $(date -u +%FT%TZ): N=$N GW_PROCS=$GW_PROCS LOAD_PROCS=$LOAD_PROCS RATE=$RATE RPS=$RPS RECONNECT=$RECONNECT LOAD_FLAGS=${LOAD_FLAGS[*]}"
echo "# $(machine_line)"
: >"$OUT/mqtt-storm-gateway.log"
start_gateway
sleep 1
base=$(median_rss 3)
echo "gateway baseline RSS: $base kB over $(gw_pids | wc -w) processes"

WARREN_JWT_SECRET=$SECRET "$BIN/warren" load -scenario devices -url "mqtt://127.0.0.1:$MQTTP" "${LOAD_FLAGS[@]}" \
  -mqtt-reconnect "$RECONNECT" -conns "$N" -procs "$LOAD_PROCS" -src "$SOURCES" -rate "$RATE" -duration 30m \
  -rps "$RPS" -timeout 10s -quiet -max-errors 1 -json "$OUT/mqtt-storm-load.json" \
  >"$OUT/mqtt-storm-load.txt" 2>"$OUT/mqtt-storm-load.err" &
LOAD_PID=$!
PIDS+=("$LOAD_PID")
t=$(now)
for ((i = 0; i < 2400; i++)); do
  [ "$(online)" -ge "$N" ] && break
  kill -0 "$LOAD_PID" 2>/dev/null || { cat "$OUT/mqtt-storm-load.err" >&2; die "warren load ended during the ramp"; }
  sleep 0.25
done
echo "devices online: $(online) of $N after $(since "$t") s"
sleep 3
held=$(median_rss 5)
echo "gateway RSS held: $held kB; per device: $(((held - base) * 1024 / N)) B (target <= 1024)"
for p in $(gw_pids); do echo "  pid $p $(tr '\0' ' ' </proc/"$p"/cmdline | cut -c1-40): $(rss_kb "$p") kB"; done

echo "# storm: SIGTERM the gateway (drain), start it again; the devices reconnect by themselves"
t0=$(now)
stop_pid "$GW_PID" 60
echo "gateway drained and exited after $(since "$t0") s"
start_gateway
ready=$(now)
echo "new gateway ready $(echo "$ready - $t0" | bc) s after the SIGTERM"
all=
# The curve: seconds after the SIGTERM and devices online, one line a poll
# (a poll is a merged scrape of every worker's metrics; a worker that does
# not answer in time is left out, so a count is never high).
: >"$OUT/mqtt-storm-online.tsv"
for ((i = 0; i < 2400; i++)); do
  n=$(online)
  echo "$(since "$t0") $n" >>"$OUT/mqtt-storm-online.tsv"
  if [ "$n" -ge "$N" ]; then
    all=$(now)
    break
  fi
  kill -0 "$LOAD_PID" 2>/dev/null || break
  sleep 0.1
done
if [ -n "$all" ]; then
  echo "storm: all $N online $(echo "$all - $t0" | bc) s after the SIGTERM, $(echo "$all - $ready" | bc) s after the new gateway was ready (target 30 s)"
else
  echo "storm: $(online) of $N online; not all back"
fi
awk -v n="$N" 'BEGIN {split("50 90 99", q, " ")} {for (i = 1; i <= 3; i++) if (!(i in at) && $2 >= n * q[i] / 100) at[i] = $1}
  END {printf "storm: seconds after the SIGTERM until"; for (i = 1; i <= 3; i++) printf " %s%% %s", q[i], (i in at) ? sprintf("%.1f", at[i]) : "never"; printf " online (curve: %s)\n", f}' \
  f="$OUT/mqtt-storm-online.tsv" "$OUT/mqtt-storm-online.tsv"
over=0
for p in $(gw_pids); do
  hwm=$(hwm_kb "$p")
  echo "  pid $p peak RSS $hwm kB"
  [ $((hwm * 1024)) -le "$MEM_BOUND" ] || over=$((over + 1))
done
echo "storm: $over gateway processes over the memory bound of $((MEM_BOUND >> 20)) MiB"
# End the load (SIGINT: it reports what it has) and show its counts.
kill -INT "$LOAD_PID" 2>/dev/null || true
for ((i = 0; i < 600; i++)); do kill -0 "$LOAD_PID" 2>/dev/null || break; sleep 0.1; done
wait "$LOAD_PID" 2>/dev/null || true
grep -E "^(connections|ramp|errors|telemetry)" "$OUT/mqtt-storm-load.txt" || head -n 12 "$OUT/mqtt-storm-load.txt"
