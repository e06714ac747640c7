#!/usr/bin/env bash
# Reverse proxy cost (issue 14): wrk through a proxy to the same backend,
# warren proxy against nginx and HAProxy (Debian packages) with equivalent
# keep-alive upstream settings. Reports, per proxy, requests per second,
# the proxy's CPU time per request (user+system of every proxy process,
# over the wrk run, divided by the requests wrk completed) and wrk's p99.
# Target: warren's CPU per request <= 0.8x nginx's and HAProxy's, p99 no
# worse.
#
#   flock /tmp/warren-bench.lock bench/proxy.sh
#   DURATION=10s CONNS=64 ROUNDS=3 WORKERS=2 bench/proxy.sh
#   WARREN_FLAGS="-fixed-loops" bench/proxy.sh     # extra warren proxy flags
#   B_BIN=/tmp/warren-old B_FLAGS="-loops 1" bench/proxy.sh
#                               # A/B: a second warren proxy ("warrenB",
#                               # binary B_BIN, default the same build,
#                               # extra flags B_FLAGS, environment B_ENV)
#                               # in the same rounds
#   C_BIN=... C_FLAGS=... C_ENV=... bench/proxy.sh
#                               # a third warren proxy ("warrenC"), as
#                               # warrenB, in the same rounds
#   B_ENV=WARREN_NETPOLL=on bench/proxy.sh
#                               # warrenB: loops parked in Go's netpoller
#                               # (the engine's mode before section 43)
#   ORDER=fixed bench/proxy.sh  # every round in the same order (default:
#                               # the order rotates by one proxy a round)
#   BATCH=1 bench/proxy.sh      # also a warren proxy with batched
#                               # pipelining ("batch": -pipeline $BATCH_PIPE
#                               # (8) -pipeline-batch) in the same rounds
#   SYSCALLS=1 bench/proxy.sh   # also: one extra run per proxy under
#                               # `strace -f -c` (system calls per request)
#                               # and TCP segments per request (nstat,
#                               # whole machine: wrk and backend included)
#
# The backend is `warren echo` (GET / → "hello", on its event loop). On
# the 2-core benchmark machine wrk, the proxy and the backend share the
# cores, so requests per second measure the machine more than the proxy;
# CPU per request is the figure to compare, best as the per-round ratios to
# nginx and HAProxy printed last (the machine drifts between rounds).
set -euo pipefail
cd "$(dirname "$0")/.."
PROG=bench/proxy.sh
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-2}
THREADS=$((CONNS < 2 ? 1 : 2)) # wrk threads
OUT=bench/out/proxy
mkdir -p "$OUT"
# shellcheck source=bench/lib.sh
source bench/lib.sh

need_cmd wrk nginx:nginx-light haproxy

go build -o "$OUT/warren" ./cmd/warren
W="$(pwd)/$OUT/warren"

BPORT=$(free_port)
"$W" echo -addr "127.0.0.1:$BPORT" -admin "" -loops 1 >"$OUT/backend.log" 2>&1 &
BACKEND_PID=$!
PIDS+=("$BACKEND_PID")
wait_port "$BPORT"

# The proxies, each on its own port, all to the backend with keep-alive.
WPORT=$(free_port)
"$W" proxy -listen "127.0.0.1:$WPORT" -admin "" -loops "$WORKERS" -upstream "http://127.0.0.1:$BPORT" \
  -max-idle-per-host 256 ${WARREN_FLAGS:-} >"$OUT/warren.log" 2>&1 &
WARREN_PID=$!
PIDS+=("$WARREN_PID")

NAMES=(warren)
if [ -n "${B_BIN:-}${B_FLAGS:-}${B_ENV:-}" ]; then
  BBPORT=$(free_port)
  # shellcheck disable=SC2086
  env ${B_ENV:-} "${B_BIN:-$W}" proxy -listen "127.0.0.1:$BBPORT" -admin "" -loops "$WORKERS" -upstream "http://127.0.0.1:$BPORT" \
    -max-idle-per-host 256 ${B_FLAGS:-} >"$OUT/warrenB.log" 2>&1 &
  WARRENB_PID=$!
  PIDS+=("$WARRENB_PID")
  NAMES+=(warrenB)
fi
if [ -n "${C_BIN:-}${C_FLAGS:-}${C_ENV:-}" ]; then
  CCPORT=$(free_port)
  # shellcheck disable=SC2086
  env ${C_ENV:-} "${C_BIN:-$W}" proxy -listen "127.0.0.1:$CCPORT" -admin "" -loops "$WORKERS" -upstream "http://127.0.0.1:$BPORT" \
    -max-idle-per-host 256 ${C_FLAGS:-} >"$OUT/warrenC.log" 2>&1 &
  WARRENC_PID=$!
  PIDS+=("$WARRENC_PID")
  NAMES+=(warrenC)
fi
if [ "${BATCH:-}" = 1 ]; then
  BTPORT=$(free_port)
  "$W" proxy -listen "127.0.0.1:$BTPORT" -admin "" -loops "$WORKERS" -upstream "http://127.0.0.1:$BPORT" \
    -max-idle-per-host 256 -pipeline "${BATCH_PIPE:-8}" -pipeline-batch ${WARREN_FLAGS:-} >"$OUT/batch.log" 2>&1 &
  BATCH_PID=$!
  PIDS+=("$BATCH_PID")
  NAMES+=(batch)
fi
NAMES+=(nginx haproxy)

NPORT=$(free_port)
NDIR=$(mktemp -d /tmp/warren-bench-nginx.XXXXXX)
nginx_proxy_conf "$NDIR" "$WORKERS" "$NPORT" "$BPORT"
nginx -p "$NDIR" -c "$NDIR/nginx.conf" >"$OUT/nginx.log" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")

HPORT=$(free_port)
HDIR=$(mktemp -d /tmp/warren-bench-haproxy.XXXXXX)
haproxy_proxy_conf "$HDIR" "$WORKERS" "$HPORT" "$BPORT"
haproxy -db -f "$HDIR/haproxy.cfg" >"$OUT/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=("$HAPROXY_PID")
wait_port "$WPORT"
wait_port "$NPORT"
wait_port "$HPORT"

# ctx_switches PID...: context switches (voluntary and not) of the
# processes' threads so far.
ctx_switches() {
  local p
  for p in "$@"; do cat /proc/"$p"/task/*/status 2>/dev/null; done |
    awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ {t += $2} END {print t + 0}'
}

# cpu_idle: the machine's idle and total clock ticks so far ("idle total").
cpu_idle() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print $5 + $6, t}' /proc/stat; }

# run NAME PORT PIDS...: one wrk run; prints "rps cpu_us_per_req p99_ms
# sys_us_per_req ctx_switches_per_req" (the kernel's share of the CPU per
# request, and how often a proxy thread slept or was preempted) and
# idle_pct (the machine's idle share during the run: a proxy that waits
# leaves the cores idle) and backend_us_per_req (the backend's CPU per
# request: the machine's cores are shared, so req/s also moves with it).
run() {
  local name=$1 port=$2
  shift 2
  local pids=("$@") before after sbefore safter cbefore cafter ibefore iafter bbefore bafter out reqs rps p99 hz
  hz=$(getconf CLK_TCK)
  wrk -t"$THREADS" -c"$CONNS" -d2s "http://127.0.0.1:$port/" >/dev/null 2>&1 # warm-up
  before=$(cpu_ticks "${pids[@]}")
  sbefore=$(sys_ticks "${pids[@]}")
  cbefore=$(ctx_switches "${pids[@]}")
  ibefore=$(cpu_idle)
  bbefore=$(cpu_ticks "$BACKEND_PID")
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$port/")
  after=$(cpu_ticks "${pids[@]}")
  safter=$(sys_ticks "${pids[@]}")
  cafter=$(ctx_switches "${pids[@]}")
  iafter=$(cpu_idle)
  bafter=$(cpu_ticks "$BACKEND_PID")
  echo "$out" >"$OUT/wrk-$name.txt"
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
  p99=$(echo "$out" | wrk_p99_ms)
  if echo "$out" | grep -q 'Non-2xx\|Socket errors'; then
    echo "$PROG: $name: $(echo "$out" | grep 'Non-2xx\|Socket errors')" >&2
  fi
  awk -v r="$rps" -v t=$((after - before)) -v s=$((safter - sbefore)) -v cs=$((cafter - cbefore)) -v hz="$hz" -v n="$reqs" -v p="$p99" \
    -v i0="$ibefore" -v i1="$iafter" -v bt=$((bafter - bbefore)) \
    'BEGIN {split(i0, a, " "); split(i1, b, " ")
      printf "%.0f %.2f %.2f %.2f %.3f %.1f %.2f\n", r, t / hz * 1e6 / n, p, s / hz * 1e6 / n, cs / n, 100 * (b[1] - a[1]) / (b[2] - a[2]), bt / hz * 1e6 / n}'
}

# syscalls NAME PORT PIDS...: one wrk run with every proxy process under
# strace -f -c; prints per-request counts of the main system calls and the
# machine's TCP segments per request (nstat deltas over the run).
syscalls() {
  local name=$1 port=$2
  shift 2
  local p spids=() out reqs f
  nstat -n >/dev/null 2>&1 || true
  for p in "$@"; do
    strace -f -c -q -o "$OUT/strace-$name.$p" -p "$p" &
    spids+=($!)
  done
  sleep 0.5
  nstat -n >/dev/null 2>&1 || true
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$port/")
  f=$(nstat 2>/dev/null | awk '$1 ~ /^(TcpOutSegs|TcpExtTCPPureAcks|TcpExtDelayedACKs)$/ {printf "%s=%s ", $1, $2}')
  for p in "${spids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${spids[@]}"; do wait "$p" 2>/dev/null || true; done
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  cat "$OUT"/strace-"$name".* | awk -v n="$reqs" -v name="$name" -v f="$f" '
    $NF ~ /^(read|write|writev|readv|recvfrom|sendto|sendmsg|recvmsg|epoll_wait|epoll_pwait|epoll_ctl|futex|accept4|nanosleep|sched_yield|io_uring_enter)$/ {c[$NF] += $4}
    END {
      printf "%s syscalls per request (%d requests under strace):", name, n
      t = 0
      for (k in c) { printf " %s %.2f", k, c[k] / n; t += c[k] }
      printf "; total %.2f\n", t / n
      split(f, kv, " ")
      printf "%s machine TCP per request:", name
      for (i in kv) { split(kv[i], a, "="); if (a[1] != "") printf " %s %.2f", a[1], a[2] / n }
      printf "\n"
    }'
  rm -f "$OUT"/strace-"$name".*
}

nginx_pids() { pgrep -P "$NGINX_PID" | tr '\n' ' '; echo "$NGINX_PID"; }

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); $(machine_line)"
echo "# wrk -t2 -c$CONNS -d$DURATION through each proxy to warren echo (-loops 1); proxies with $WORKERS workers/threads/loops; $ROUNDS rounds"
echo "# nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), HAProxy $(haproxy -v | head -1 | awk '{print $3}')"
[ -n "${BBPORT:-}" ] && wait_port "$BBPORT"
[ -n "${CCPORT:-}" ] && wait_port "$CCPORT"
[ -n "${BTPORT:-}" ] && wait_port "$BTPORT"
for name in "${NAMES[@]}"; do : >"$OUT/$name.rounds"; done
# run_named NAME: one round's run of the proxy NAME, appended to its rounds.
run_named() {
  case $1 in
  warren) echo "warren $(run warren "$WPORT" "$WARREN_PID")" ;;
  warrenB) echo "warrenB $(run warrenB "$BBPORT" "$WARRENB_PID")" ;;
  warrenC) echo "warrenC $(run warrenC "$CCPORT" "$WARRENC_PID")" ;;
  batch) echo "batch $(run batch "$BTPORT" "$BATCH_PID")" ;;
  # shellcheck disable=SC2046
  nginx) echo "nginx $(run nginx "$NPORT" $(nginx_pids))" ;;
  haproxy) echo "haproxy $(run haproxy "$HPORT" "$HAPROXY_PID")" ;;
  esac | tee -a "$OUT/$1.rounds"
}
# Each round runs every proxy once; the order rotates by one proxy a round
# (round 1 starts with warren, round 2 with the next, ...), so no proxy
# always runs first or right after another, and whatever a slot does to
# its figure (docs/benchmarks.md §108) is spread over all of them.
# ORDER=fixed keeps the old fixed order.
for ((r = 1; r <= ROUNDS; r++)); do
  n=${#NAMES[@]}
  off=$(((r - 1) % n))
  [ "${ORDER:-rotate}" = fixed ] && off=0
  order=()
  for ((i = 0; i < n; i++)); do order+=("${NAMES[$(((off + i) % n))]}"); done
  echo "# round $r: ${order[*]}"
  for name in "${order[@]}"; do run_named "$name"; done
done
echo
printf '%-8s %12s %16s %10s %16s %12s %10s %18s\n' proxy "req/s" "CPU us/req" "p99 ms" "of it kernel us" "ctxsw/req" "idle %" "backend us/req"
for name in "${NAMES[@]}"; do
  printf '%-8s %12s %16s %10s %16s %12s %10s %18s\n' "$name" \
    "$(awk '{print $2}' "$OUT/$name.rounds" | median)" \
    "$(awk '{print $3}' "$OUT/$name.rounds" | median)" \
    "$(awk '{print $4}' "$OUT/$name.rounds" | median)" \
    "$(awk '{print $5}' "$OUT/$name.rounds" | median)" \
    "$(awk '{print $6}' "$OUT/$name.rounds" | median)" \
    "$(awk '{print $7}' "$OUT/$name.rounds" | median)" \
    "$(awk '{print $8}' "$OUT/$name.rounds" | median)"
done
if [ "${SYSCALLS:-}" = 1 ]; then
  echo
  syscalls warren "$WPORT" "$WARREN_PID"
  [ -n "${BBPORT:-}" ] && syscalls warrenB "$BBPORT" "$WARRENB_PID"
  [ -n "${CCPORT:-}" ] && syscalls warrenC "$CCPORT" "$WARRENC_PID"
  [ -n "${BTPORT:-}" ] && syscalls batch "$BTPORT" "$BATCH_PID"
  # shellcheck disable=SC2046
  syscalls nginx "$NPORT" $(nginx_pids)
  syscalls haproxy "$HPORT" "$HAPROXY_PID"
  echo
fi
w=$(awk '{print $3}' "$OUT/warren.rounds" | median)
n=$(awk '{print $3}' "$OUT/nginx.rounds" | median)
h=$(awk '{print $3}' "$OUT/haproxy.rounds" | median)
awk -v w="$w" -v n="$n" -v h="$h" 'BEGIN {printf "warren CPU per request: %.2fx nginx, %.2fx HAProxy (target <= 0.80x)\n", w / n, w / h}'
# p99 ratios (target: no worse, <= 1.00x)
wp=$(awk '{print $4}' "$OUT/warren.rounds" | median)
np=$(awk '{print $4}' "$OUT/nginx.rounds" | median)
hp=$(awk '{print $4}' "$OUT/haproxy.rounds" | median)
awk -v w="$wp" -v n="$np" -v h="$hp" 'BEGIN {printf "warren p99: %.2fx nginx, %.2fx HAProxy (target <= 1.00x)\n", w / n, w / h}'
if [ -n "${BTPORT:-}" ]; then
  bt=$(awk '{print $3}' "$OUT/batch.rounds" | median)
  bp=$(awk '{print $4}' "$OUT/batch.rounds" | median)
  awk -v w="$bt" -v a="$w" -v n="$n" -v h="$h" 'BEGIN {printf "batch CPU per request: %.2fx nginx, %.2fx HAProxy (target <= 0.80x), %.2fx warren\n", w / n, w / h, w / a}'
  awk -v w="$bp" -v a="$wp" -v n="$np" -v h="$hp" 'BEGIN {printf "batch p99: %.2fx nginx, %.2fx HAProxy (target <= 1.00x), %.2fx warren\n", w / n, w / h, w / a}'
fi
if [ -n "${BBPORT:-}" ]; then
  wb=$(awk '{print $3}' "$OUT/warrenB.rounds" | median)
  awk -v w="$wb" -v a="$w" -v n="$n" -v h="$h" 'BEGIN {printf "warrenB CPU per request: %.2fx warren, %.2fx nginx, %.2fx HAProxy\n", w / a, w / n, w / h}'
  wbp=$(awk '{print $4}' "$OUT/warrenB.rounds" | median)
  awk -v w="$wbp" -v a="$wp" -v n="$np" -v h="$hp" 'BEGIN {printf "warrenB p99: %.2fx warren, %.2fx nginx, %.2fx HAProxy\n", w / a, w / n, w / h}'
  paste -d' ' "$OUT/warren.rounds" "$OUT/warrenB.rounds" | awk '{printf "round %d: warrenB/warren CPU per request %.2f, req/s %.2f, p99 %.2f\n", NR, $11 / $3, $10 / $2, $12 / $4}'
fi
if [ -n "${CCPORT:-}" ]; then
  wc=$(awk '{print $3}' "$OUT/warrenC.rounds" | median)
  awk -v w="$wc" -v a="$w" -v n="$n" -v h="$h" 'BEGIN {printf "warrenC CPU per request: %.2fx warren, %.2fx nginx, %.2fx HAProxy\n", w / a, w / n, w / h}'
  wcp=$(awk '{print $4}' "$OUT/warrenC.rounds" | median)
  awk -v w="$wcp" -v a="$wp" -v n="$np" -v h="$hp" 'BEGIN {printf "warrenC p99: %.2fx warren, %.2fx nginx, %.2fx HAProxy\n", w / a, w / n, w / h}'
  paste -d' ' "$OUT/warren.rounds" "$OUT/warrenC.rounds" | awk '{printf "round %d: warrenC/warren CPU per request %.2f, req/s %.2f, p99 %.2f\n", NR, $11 / $3, $10 / $2, $12 / $4}'
fi
# Per round, each proxy's p99 over HAProxy's in the same round.
for name in "${NAMES[@]}"; do
  [ "$name" = haproxy ] && continue
  paste -d' ' "$OUT/$name.rounds" "$OUT/haproxy.rounds" | awk -v name="$name" '{r = r sprintf(" %.2f", $4 / $12)} END {printf "%s p99 / HAProxy per round:%s\n", name, r}'
done
# Per round, each warren's CPU per request over nginx's and HAProxy's in
# the same round, and the median of those ratios: the machine's drift
# between rounds moves every proxy, so the per-round ratio is the steadier
# figure.
for name in "${NAMES[@]}"; do
  case $name in nginx | haproxy) continue ;; esac
  for peer in nginx haproxy; do
    rs=$(paste -d' ' "$OUT/$name.rounds" "$OUT/$peer.rounds" | awk '{printf "%.2f\n", $3 / $11}')
    echo "$name CPU / $peer per round: $(echo "$rs" | tr '\n' ' ')(median $(echo "$rs" | median))"
  done
done
rm -rf "$NDIR" "$HDIR"
