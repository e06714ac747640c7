#!/usr/bin/env bash
# What HTTP/1.1 pipelining buys toward a backend the proxy may open only a
# few connections to (issue 14): closed-loop load (bench/cmd/latclient,
# CONNS keep-alive client connections) through two warren proxies to one
# backend (bench/cmd/slowtail, net/http, answering at once, SLOW_PCT % after
# SLOW), both with -max-conns-per-host MAXCONNS, one also with -pipeline
# PIPE, in alternating rounds. Without pipelining the requests beyond
# MAXCONNS wait in the proxy's pending queue; with it they are written
# behind the requests on the busy connections. Reports per proxy (medians
# of ROUNDS): requests per second, latency percentiles, CPU per request,
# the share of requests pipelined and retried after a pipeline reset (the
# proxy's /metrics), and errors.
#
#   flock /tmp/warren-bench.lock bench/proxy-pipeline.sh
#   CONNS=32 MAXCONNS=2 PIPE=8 DURATION=10s ROUNDS=3 bench/proxy-pipeline.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PROG=bench/proxy-pipeline.sh
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
MAXCONNS=${MAXCONNS:-2}
PIPE=${PIPE:-8}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-2}
SLOW=${SLOW:-1ms}
SLOW_PCT=${SLOW_PCT:-0}
OUT=bench/out/proxy-pipeline
mkdir -p "$OUT"
# shellcheck source=bench/lib.sh
source bench/lib.sh

need_cmd curl

go build -o "$OUT/warren" ./cmd/warren
go build -o "$OUT/slowtail" ./bench/cmd/slowtail
go build -o "$OUT/latclient" ./bench/cmd/latclient
W="$(pwd)/$OUT/warren"


BPORT=$(free_port)
"$OUT/slowtail" -addr "127.0.0.1:$BPORT" -slow-pct "$SLOW_PCT" -slow "$SLOW" >"$OUT/backend.log" 2>&1 &
PIDS+=($!)
wait_port "$BPORT"
UPS="http://127.0.0.1:$BPORT"

# start_proxy NAME FLAGS...: sets <NAME>_PORT, <NAME>_ADMIN, <NAME>_PID.
start_proxy() {
  local name=$1 port admin
  shift
  port=$(free_port)
  admin=$(free_port)
  "$W" proxy -listen "127.0.0.1:$port" -admin "127.0.0.1:$admin" -loops "$WORKERS" -upstream "$UPS" \
    -max-conns-per-host "$MAXCONNS" -pending-timeout 30s "$@" >"$OUT/$name.log" 2>&1 &
  PIDS+=($!)
  printf -v "${name}_PID" %s $!
  printf -v "${name}_PORT" %s "$port"
  printf -v "${name}_ADMIN" %s "$admin"
  wait_port "$port"
}
start_proxy queued
start_proxy pipelined -pipeline "$PIPE"

# run NAME: one load run; prints "rps p50 p90 p99 p999 cpu_us_per_req
# pipelined_pct pipeline_reset_pct errors".
run() {
  local name=$1 port pid admin out c0 c1 p0 p1 r0 r1 hz
  port=${name}_PORT pid=${name}_PID admin=${name}_ADMIN
  port=${!port} pid=${!pid} admin=${!admin}
  hz=$(getconf CLK_TCK)
  "$OUT/latclient" -addr "127.0.0.1:$port" -conns "$CONNS" -duration 2s >/dev/null # warm-up
  p0=$(port_metric "$admin" warren_upstream_rq_pipelined_total) r0=$(port_metric "$admin" warren_upstream_rq_pipeline_reset_total)
  c0=$(cpu_ticks "$pid")
  out=$("$OUT/latclient" -addr "127.0.0.1:$port" -conns "$CONNS" -duration "$DURATION")
  c1=$(cpu_ticks "$pid")
  p1=$(port_metric "$admin" warren_upstream_rq_pipelined_total) r1=$(port_metric "$admin" warren_upstream_rq_pipeline_reset_total)
  echo "$out" >>"$OUT/latclient-$name.txt"
  echo "$out" | awk -v t=$((c1 - c0)) -v hz="$hz" -v p=$((p1 - p0)) -v r=$((r1 - r0)) \
    '{n = $2; printf "%s %s %s %s %s %.2f %.1f %.3f %s\n", $6, $8, $10, $12, $14, t / hz * 1e6 / n, 100 * p / n, 100 * r / n, $4}'
}

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); $(machine_line); commit $(git rev-parse --short HEAD)$(git diff --quiet || echo +dirty)"
echo "# latclient -conns $CONNS -duration $DURATION (closed loop) through warren proxy (-loops $WORKERS, -max-conns-per-host $MAXCONNS) to one slowtail backend ($SLOW_PCT% of requests take $SLOW); pipelined: -pipeline $PIPE; $ROUNDS rounds"
: >"$OUT/queued.rounds"
: >"$OUT/pipelined.rounds"
: >"$OUT/latclient-queued.txt"
: >"$OUT/latclient-pipelined.txt"
for ((r = 1; r <= ROUNDS; r++)); do
  echo "queued $(run queued)" | tee -a "$OUT/queued.rounds"
  echo "pipelined $(run pipelined)" | tee -a "$OUT/pipelined.rounds"
done
echo
printf '%-10s %8s %8s %8s %8s %9s %11s %11s %10s %7s\n' proxy "req/s" "p50 ms" "p90 ms" "p99 ms" "p99.9 ms" "CPU us/req" "pipelined%" "p.reset%" errors
for name in queued pipelined; do
  printf '%-10s' "$name"
  for col in 2 3 4 5 6 7 8 9 10; do
    printf ' %*s' "$(echo 0 8 8 8 8 9 11 11 10 7 | awk -v c=$col '{print $c}')" "$(awk -v c=$col '{print $c}' "$OUT/$name.rounds" | median)"
  done
  echo
done
