#!/usr/bin/env bash
# What hedging buys (issue 14): load through warren proxy to three backends
# with a slow tail (bench/cmd/slowtail: SLOW_PCT % of requests answered
# after SLOW), once through a proxy without hedging and once through one
# with -hedge-delay HEDGE, in alternating rounds. Reports, per proxy, the
# exact latency percentiles (bench/cmd/latclient keeps every request's
# latency), requests per second, the proxy's CPU per request, the hedges sent and won (the proxy's /metrics) and the extra
# load on the backends: requests the backends received per request the
# client completed, less one.
#
#   flock /tmp/warren-bench.lock bench/proxy-hedge.sh
#   HEDGE=20ms SLOW=100ms SLOW_PCT=2 CONNS=64 RATE=4000 DURATION=10s ROUNDS=3 bench/proxy-hedge.sh
#   RATE=0 CONNS=32 bench/proxy-hedge.sh      # closed loop: as fast as answered
#
# The client sends RATE requests a second over CONNS keep-alive
# connections (one request at a time each, catching up after a slow
# answer), so both proxies carry the same load and their CPU per request
# and latency compare; RATE=0 is closed-loop (each connection sends again
# as soon as it has its answer), where a proxy that cuts the tail also
# serves more requests. wrk is not used: with a slow tail its latency
# figures on this machine break Little's law by 10x.
set -euo pipefail
cd "$(dirname "$0")/.."
PROG=bench/proxy-hedge.sh
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
RATE=${RATE:-4000}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-2}
HEDGE=${HEDGE:-20ms}
SLOW=${SLOW:-100ms}
SLOW_PCT=${SLOW_PCT:-2}
OUT=bench/out/proxy-hedge
mkdir -p "$OUT"
# shellcheck source=bench/lib.sh
source bench/lib.sh

need_cmd curl

go build -o "$OUT/warren" ./cmd/warren
go build -o "$OUT/slowtail" ./bench/cmd/slowtail
go build -o "$OUT/latclient" ./bench/cmd/latclient
W="$(pwd)/$OUT/warren"


BPORTS=()
UPS=""
for i in 1 2 3; do
  p=$(free_port)
  "$OUT/slowtail" -addr "127.0.0.1:$p" -slow-pct "$SLOW_PCT" -slow "$SLOW" >"$OUT/backend$i.log" 2>&1 &
  PIDS+=($!)
  BPORTS+=("$p")
  UPS="${UPS:+$UPS,}http://127.0.0.1:$p"
done
for p in "${BPORTS[@]}"; do wait_port "$p"; done

# backend_requests: requests all backends received so far.
backend_requests() {
  local p t=0 n
  for p in "${BPORTS[@]}"; do
    n=$(curl -s "http://127.0.0.1:$p/__stats" | awk '{print $2}')
    t=$((t + n))
  done
  echo "$t"
}
backend_canceled() {
  local p t=0 n
  for p in "${BPORTS[@]}"; do
    n=$(curl -s "http://127.0.0.1:$p/__stats" | awk '{print $6}')
    t=$((t + n))
  done
  echo "$t"
}

# start_proxy NAME FLAGS...: a warren proxy on a free port with an admin
# listener; sets <NAME>_PORT, <NAME>_ADMIN, <NAME>_PID.
start_proxy() {
  local name=$1 port admin
  shift
  port=$(free_port)
  admin=$(free_port)
  "$W" proxy -listen "127.0.0.1:$port" -admin "127.0.0.1:$admin" -loops "$WORKERS" -upstream "$UPS" \
    -max-idle-per-host 256 "$@" >"$OUT/$name.log" 2>&1 &
  PIDS+=($!)
  printf -v "${name}_PID" %s $!
  printf -v "${name}_PORT" %s "$port"
  printf -v "${name}_ADMIN" %s "$admin"
  wait_port "$port"
}
start_proxy plain
start_proxy hedged -hedge-delay "$HEDGE"


# run NAME: one load run; prints "rps p50 p90 p99 p999 cpu_us_per_req
# extra_load_pct hedged_pct won_pct canceled_per_1000 errors".
run() {
  local name=$1 port pid admin out reqs b0 b1 c0 c1 k0 k1 h0 h1 w0 w1 hz secs
  port=${name}_PORT pid=${name}_PID admin=${name}_ADMIN
  port=${!port} pid=${!pid} admin=${!admin}
  hz=$(getconf CLK_TCK)
  "$OUT/latclient" -addr "127.0.0.1:$port" -conns "$CONNS" -rate "$RATE" -duration 2s >/dev/null # warm-up
  b0=$(backend_requests) k0=$(backend_canceled)
  h0=$(port_metric "$admin" warren_upstream_rq_hedged_total) w0=$(port_metric "$admin" warren_upstream_rq_hedge_won_total)
  c0=$(cpu_ticks "$pid")
  out=$("$OUT/latclient" -addr "127.0.0.1:$port" -conns "$CONNS" -rate "$RATE" -duration "$DURATION")
  c1=$(cpu_ticks "$pid")
  b1=$(backend_requests) k1=$(backend_canceled)
  h1=$(port_metric "$admin" warren_upstream_rq_hedged_total) w1=$(port_metric "$admin" warren_upstream_rq_hedge_won_total)
  echo "$out" >>"$OUT/latclient-$name.txt"
  echo "$out" | awk -v t=$((c1 - c0)) -v hz="$hz" -v b=$((b1 - b0)) -v h=$((h1 - h0)) -v w=$((w1 - w0)) -v k=$((k1 - k0)) \
    '{n = $2; printf "%s %s %s %s %s %.2f %.2f %.2f %.2f %.2f %s\n", $6, $8, $10, $12, $14, t / hz * 1e6 / n, 100 * (b / n - 1), 100 * h / n, 100 * w / n, 1000 * k / n, $4}'
}

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); $(machine_line); commit $(git rev-parse --short HEAD)$(git diff --quiet || echo +dirty)"
echo "# latclient -conns $CONNS -rate $RATE -duration $DURATION through warren proxy (-loops $WORKERS) to 3 slowtail backends: $SLOW_PCT% of requests take $SLOW; hedged: -hedge-delay $HEDGE; $ROUNDS rounds"
: >"$OUT/plain.rounds"
: >"$OUT/hedged.rounds"
: >"$OUT/latclient-plain.txt"
: >"$OUT/latclient-hedged.txt"
for ((r = 1; r <= ROUNDS; r++)); do
  echo "plain $(run plain)" | tee -a "$OUT/plain.rounds"
  echo "hedged $(run hedged)" | tee -a "$OUT/hedged.rounds"
done
echo
printf '%-8s %8s %8s %8s %8s %9s %11s %12s %8s %6s %14s %7s\n' proxy "req/s" "p50 ms" "p90 ms" "p99 ms" "p99.9 ms" "CPU us/req" "extra load%" "hedged%" "won%" "canceled/1000" errors
for name in plain hedged; do
  printf '%-8s' "$name"
  for col in 2 3 4 5 6 7 8 9 10 11 12; do
    printf ' %*s' "$(echo 0 8 8 8 8 9 11 12 8 6 14 7 | awk -v c=$col '{print $c}')" "$(awk -v c=$col '{print $c}' "$OUT/$name.rounds" | median)"
  done
  echo
done
