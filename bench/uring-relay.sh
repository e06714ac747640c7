#!/usr/bin/env bash
# Can io_uring lower a proxy's CPU per request (docs/benchmarks.md §83)?
# wrk through bench/cmd/uringrelay (a minimal keep-alive relay, one backend
# connection per client connection) in its two modes — epoll (epoll_wait,
# then read()/write() per ready socket, as warren's engine) and uring (one
# io_uring_enter a round: the round's sends submitted and the next
# completions waited for together, multishot recv into provided buffers)
# — and, in the same rounds, the uring mode with -min-wait 0 ("uring1":
# a round that sent waits for one completion, so it costs a second
# io_uring_enter) and -mode uring-epoll ("uep": epoll's readiness and
# read(), the wait an IORING_OP_EPOLL_WAIT submitted with the round's
# sends in one enter: writes deferred to the round's end), nginx, HAProxy and `warren proxy` (default
# configuration), all with WORKERS loops/workers/threads, to the same
# backend (`warren echo -loops 1`), as bench/proxy.sh. The order of the
# five rotates from round to round.
#
# Per run: requests per second, CPU per request (user+system of the
# relay's or proxy's processes over the wrk run ÷ requests), of it kernel,
# p99, context switches per request and, for the relays, requests per
# loop round (their own counters). SYSCALLS=1 adds one run of each under
# `strace -f -c` (system calls per request).
#
#   flock /tmp/warren-bench.lock bench/uring-relay.sh
#   DURATION=10s CONNS=64 ROUNDS=3 WORKERS=2 SYSCALLS=1 bench/uring-relay.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PROG=bench/uring-relay.sh
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-2}
THREADS=$((CONNS < 2 ? 1 : 2)) # wrk threads
OUT=bench/out/uring-relay
mkdir -p "$OUT"
# shellcheck source=bench/lib.sh
source bench/lib.sh

need_cmd wrk nginx:nginx-light haproxy strace

[ "$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0)" = 0 ] ||
  die "io_uring is disabled (/proc/sys/kernel/io_uring_disabled)"
go build -o "$OUT/warren" ./cmd/warren
go build -o "$OUT/uringrelay" ./bench/cmd/uringrelay
W="$(pwd)/$OUT/warren"
R="$(pwd)/$OUT/uringrelay"

BPORT=$(free_port)
"$W" echo -addr "127.0.0.1:$BPORT" -admin "" -loops 1 >"$OUT/backend.log" 2>&1 &
BACKEND_PID=$!
PIDS+=("$BACKEND_PID")
wait_port "$BPORT"

declare -A PORT PID
# uring1: the uring mode waiting for one completion a round (-min-wait 0),
# so a round that sent costs a second io_uring_enter.
# uep: -mode uring-epoll -min-wait 0 (epoll's readiness and read(); the wait is an
# IORING_OP_EPOLL_WAIT submitted with the round's sends in one enter).
for name in epoll uring uring1 uep; do
  mode=${name%1}
  flags=()
  [ "$name" = uring1 ] && flags=(-min-wait 0)
  [ "$name" = uep ] && mode=uring-epoll && flags=(-min-wait 0)
  PORT[$name]=$(free_port)
  "$R" -listen "127.0.0.1:${PORT[$name]}" -backend "127.0.0.1:$BPORT" -loops "$WORKERS" -mode "$mode" -max 30m "${flags[@]}" \
    >"$OUT/$name.log" 2>&1 &
  PID[$name]=$!
  PIDS+=("${PID[$name]}")
done

PORT[warren]=$(free_port)
"$W" proxy -listen "127.0.0.1:${PORT[warren]}" -admin "" -loops "$WORKERS" -upstream "http://127.0.0.1:$BPORT" \
  -max-idle-per-host 256 >"$OUT/warren.log" 2>&1 &
PID[warren]=$!
PIDS+=("${PID[warren]}")

PORT[nginx]=$(free_port)
NDIR=$(mktemp -d /tmp/warren-bench-nginx.XXXXXX)
nginx_proxy_conf "$NDIR" "$WORKERS" "${PORT[nginx]}" "$BPORT"
nginx -p "$NDIR" -c "$NDIR/nginx.conf" >"$OUT/nginx.log" 2>&1 &
PID[nginx]=$!
PIDS+=("${PID[nginx]}")

PORT[haproxy]=$(free_port)
HDIR=$(mktemp -d /tmp/warren-bench-haproxy.XXXXXX)
trap 'cleanup; rm -rf "$NDIR" "$HDIR"' EXIT
haproxy_proxy_conf "$HDIR" "$WORKERS" "${PORT[haproxy]}" "$BPORT"
haproxy -db -f "$HDIR/haproxy.cfg" >"$OUT/haproxy.log" 2>&1 &
PID[haproxy]=$!
PIDS+=("${PID[haproxy]}")
NAMES=(epoll uring uring1 uep nginx haproxy warren)
for name in "${NAMES[@]}"; do wait_port "${PORT[$name]}"; done

# pids NAME: the processes whose CPU counts for NAME (nginx: master and workers).
pids() {
  if [ "$1" = nginx ]; then
    pgrep -P "${PID[nginx]}" | tr '\n' ' '
  fi
  echo "${PID[$1]}"
}

# relay_rounds NAME: the relay's loop rounds so far (all loops), from its
# STATS lines on SIGUSR1; 0 for the others.
relay_rounds() {
  case $1 in epoll | uring | uring1 | uep) ;; *) echo 0; return ;; esac
  local log=$OUT/$1.log before i
  before=$(grep -c '^STATS ' "$log" || true)
  kill -USR1 "${PID[$1]}"
  for ((i = 0; i < 50; i++)); do
    [ "$(grep -c '^STATS ' "$log" || true)" -ge $((before + WORKERS)) ] && break
    sleep 0.05
  done
  grep '^STATS ' "$log" | tail -n "$WORKERS" | sed -E 's/.*rounds=([0-9]+).*/\1/' | awk '{t += $1} END {print t + 0}'
}

ctx_switches() {
  local p
  for p in "$@"; do cat /proc/"$p"/task/*/status 2>/dev/null; done |
    awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ {t += $2} END {print t + 0}'
}

# run NAME: one wrk run through NAME; prints "rps cpu_us_per_req p99_ms
# sys_us_per_req ctxsw_per_req req_per_round".
run() {
  local name=$1 port=${PORT[$1]} pids before after sbefore safter cbefore cafter rbefore rafter out reqs rps p99 hz
  read -r -a pids <<<"$(pids "$name")"
  hz=$(getconf CLK_TCK)
  wrk -t"$THREADS" -c"$CONNS" -d2s "http://127.0.0.1:$port/" >/dev/null 2>&1 # warm-up
  rbefore=$(relay_rounds "$name")
  before=$(cpu_ticks "${pids[@]}")
  sbefore=$(sys_ticks "${pids[@]}")
  cbefore=$(ctx_switches "${pids[@]}")
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$port/")
  after=$(cpu_ticks "${pids[@]}")
  safter=$(sys_ticks "${pids[@]}")
  cafter=$(ctx_switches "${pids[@]}")
  rafter=$(relay_rounds "$name")
  echo "$out" >"$OUT/wrk-$name.txt"
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
  p99=$(echo "$out" | wrk_p99_ms)
  if echo "$out" | grep -q 'Non-2xx\|Socket errors'; then
    echo "$PROG: $name: $(echo "$out" | grep 'Non-2xx\|Socket errors')" >&2
  fi
  awk -v r="$rps" -v t=$((after - before)) -v s=$((safter - sbefore)) -v cs=$((cafter - cbefore)) -v hz="$hz" -v n="$reqs" -v p="$p99" \
    -v rr=$((rafter - rbefore)) \
    'BEGIN {printf "%.0f %.2f %.2f %.2f %.3f %s\n", r, t / hz * 1e6 / n, p, s / hz * 1e6 / n, cs / n, (rr > 0 ? sprintf("%.2f", n / rr) : "-")}'
}

# syscalls NAME: one wrk run with NAME's processes under strace -f -c;
# prints its system calls per request.
syscalls() {
  local name=$1 port=${PORT[$1]} p spids=() out reqs
  for p in $(pids "$name"); do
    strace -f -c -q -o "$OUT/strace-$name.$p" -p "$p" &
    spids+=($!)
  done
  sleep 0.5
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$port/")
  for p in "${spids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${spids[@]}"; do wait "$p" 2>/dev/null || true; done
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  cat "$OUT"/strace-"$name".* | awk -v n="$reqs" -v name="$name" '
    $NF ~ /^(read|write|writev|readv|recvfrom|sendto|sendmsg|recvmsg|epoll_wait|epoll_pwait|epoll_ctl|futex|accept4|nanosleep|sched_yield|io_uring_enter|getpid|tgkill|rt_sigreturn)$/ {c[$NF] += $4}
    END {
      printf "%s syscalls per request (%d requests under strace):", name, n
      t = 0
      for (k in c) { printf " %s %.2f", k, c[k] / n; t += c[k] }
      printf "; total %.2f\n", t / n
    }'
  rm -f "$OUT"/strace-"$name".*
}

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); $(machine_line)"
echo "# commit $(git rev-parse --short HEAD); wrk -t$THREADS -c$CONNS -d$DURATION (after 2s warm-up) to warren echo -loops 1; $WORKERS loops/workers/threads; $ROUNDS rounds, order rotating"
echo "# nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), HAProxy $(haproxy -v | head -1 | awk '{print $3}')"
echo "# name round: req/s CPU_us/req p99_ms kernel_us/req ctxsw/req req/round"
for name in "${NAMES[@]}"; do : >"$OUT/$name.rounds"; done
for ((r = 0; r < ROUNDS; r++)); do
  for ((k = 0; k < ${#NAMES[@]}; k++)); do
    name=${NAMES[$(((k + r) % ${#NAMES[@]}))]}
    line=$(run "$name")
    echo "$r $line" >>"$OUT/$name.rounds"
    echo "$name $((r + 1)): $line"
  done
done
# The rounds files are "round rps cpu p99 sys ctxsw req/round", sorted by round.
for name in "${NAMES[@]}"; do sort -n -o "$OUT/$name.rounds" "$OUT/$name.rounds"; done
echo
printf '%-8s %10s %12s %10s %14s %10s %10s\n' name "req/s" "CPU us/req" "p99 ms" "kernel us/req" "ctxsw/req" "req/round"
for name in "${NAMES[@]}"; do
  printf '%-8s %10s %12s %10s %14s %10s %10s\n' "$name" \
    "$(awk '{print $2}' "$OUT/$name.rounds" | median)" \
    "$(awk '{print $3}' "$OUT/$name.rounds" | median)" \
    "$(awk '{print $4}' "$OUT/$name.rounds" | median)" \
    "$(awk '{print $5}' "$OUT/$name.rounds" | median)" \
    "$(awk '{print $6}' "$OUT/$name.rounds" | median)" \
    "$(awk '{print $7}' "$OUT/$name.rounds" | grep -v -- - | median)"
done
echo
# ratio A B: per round A's CPU per request over B's, and the ratio of the medians.
ratio() {
  local a=$1 b=$2 per ma mb
  per=$(paste -d' ' "$OUT/$a.rounds" "$OUT/$b.rounds" | awk '{printf " %.2f", $3 / $10}')
  ma=$(awk '{print $3}' "$OUT/$a.rounds" | median)
  mb=$(awk '{print $3}' "$OUT/$b.rounds" | median)
  echo "CPU per request $a / $b: per round$per; median of the ratios $(echo "$per" | tr ' ' '\n' | grep . | median); ratio of the medians $(awk -v a="$ma" -v b="$mb" 'BEGIN {printf "%.2f", a / b}')"
}
ratio uring epoll
ratio uring1 epoll
ratio uep epoll
ratio epoll nginx
ratio uring nginx
ratio uring haproxy
ratio uring1 nginx
ratio uring1 haproxy
ratio uep nginx
ratio epoll haproxy
ratio warren nginx
ratio warren haproxy
ratio epoll warren
p99ratio() {
  local a=$1 b=$2
  echo "p99 $a / $b per round:$(paste -d' ' "$OUT/$a.rounds" "$OUT/$b.rounds" | awk '{printf " %.2f", $4 / $11}')"
}
p99ratio uring epoll
p99ratio uring nginx
p99ratio uring haproxy
if [ "${SYSCALLS:-}" = 1 ]; then
  echo
  for name in "${NAMES[@]}"; do syscalls "$name"; done
fi
echo "# end $(date -u '+%H:%M UTC'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
