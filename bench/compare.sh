#!/usr/bin/env bash
# compare.sh — warren side by side with its peers, one scenario per call,
# every server on the same load in the same run, with the ratios.
#
#   bench/compare.sh ws-idle    15,000 idle WebSockets: server RSS per connection
#   bench/compare.sh http       keep-alive GET / under wrk and warren load: req/s, server CPU µs/req
#   bench/compare.sh ws-echo    WebSocket echo: 15,000 conns open-loop at RPS, and 64 conns closed-loop
#   bench/compare.sh churn      connect + one request + close per second; fds and RSS before/after
#   bench/compare.sh drain      SIGTERM with 2,000 open WebSockets: Close 1001 to all, exit 0 in time
#   bench/compare.sh c120k      120,000 WebSockets held by a prefork warren (N=... to go further)
#
# Peers (built or installed by this script; each is its own module or npm
# package under bench/peers/, so the main go.mod stays clean):
#   warren     warren echo (GET / inline on the loops, GET /ws echo inline)
#   gorilla    net/http + github.com/gorilla/websocket, goroutine per connection
#   fasthttp   valyala/fasthttp (HTTP only)
#   nethttp    net/http (HTTP only)
#   node       Node.js http + ws (npm install runs when node_modules is missing)
#   warren-alt the warren binary at $WARREN_ALT, e.g. built from another
#              commit, for an A/B of two engine versions in the same run
#
# Environment (all optional):
#   RUNS      runs per scenario (3; http: 5); server order rotates between runs
#   SERVERS   servers to compare (default per scenario)
#   OUT       build and log directory (bench/out)
#   ws-idle:  N (15000), HOLD (10s)
#   http:     CONNS (128), DURATION (10s), THREADS (wrk threads, 1), TOOLS ("wrk load")
#   ws-echo:  N (15000), LOAD_PROCS (2), RPS ("10000 20000"), DURATION (20s),
#             MSG_SIZE (32), CLOSED_CONNS (64; 0 skips the closed-loop run)
#   churn:    C (64), D (10s), MODES ("ws http"), ROUNDS (2), SETTLE (5 s)
#   drain:    N (2000), DRAIN_TIMEOUT (10s)
#   c120k:    N (120000), PER_PROC (17500: connections per server and per
#             client process), SPROCS / LPROCS (N / PER_PROC rounded up),
#             RATE (connects/s, 3000), HOLD (30s), TRAFFIC_RPS (10000; 0: none),
#             TRAFFIC (20s), SRC (source addresses, N/4000+10),
#             MIN_AVAIL_MB (3072: abort the ramp when MemAvailable drops below)
#
# Linux only (it reads /proc). Every wait is bounded; every process this
# script starts is stopped by pid when it exits. Results: a summary on
# stdout, per-run figures and logs in $OUT/logs/compare-SCENARIO-TIME/.
set -euo pipefail
cd "$(dirname "$0")/.."

SCENARIO=${1:-}
OUT=${OUT:-bench/out}
PROG=compare
# shellcheck source=bench/lib.sh
. bench/lib.sh
[ -r /proc/self/stat ] || die "needs Linux /proc"

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
case $SCENARIO in
  ws-idle | ws-echo | churn | drain) DEFAULT_SERVERS="warren gorilla node" ;;
  http) DEFAULT_SERVERS="warren fasthttp nethttp node" ;;
  c120k) DEFAULT_SERVERS="warren" ;;
  *) usage ;;
esac
SERVERS=${SERVERS:-$DEFAULT_SERVERS}
if [ "$SCENARIO" = http ]; then RUNS=${RUNS:-5}; else RUNS=${RUNS:-3}; fi

# ---- build ---------------------------------------------------------------
BIN=$OUT/$PROG
mkdir -p "$BIN"
LOGDIR=$OUT/logs/compare-$SCENARIO-$(date +%Y%m%d-%H%M%S)
mkdir -p "$LOGDIR"
RESULTS=$LOGDIR/results.tsv
need_node=
for s in $SERVERS; do
  case $s in
    warren | gorilla | fasthttp | nethttp) ;;
    node) need_node=1 ;;
    warren-alt) [ -x "${WARREN_ALT:-}" ] || die "warren-alt needs WARREN_ALT=/path/to/a/warren/binary" ;;
    *) die "unknown server $s (warren gorilla fasthttp nethttp node warren-alt)" ;;
  esac
done
echo "building into $BIN ..."
go build -o "$BIN/warren" ./cmd/warren
for p in churn wsdrain; do go build -o "$BIN/$p" "./bench/cmd/$p"; done
for p in gorilla fasthttp nethttp; do
  [[ " $SERVERS " == *" $p "* ]] || continue
  (cd "bench/peers/$p" && go build -o "../../../$BIN/$p-peer" .)
done
if [ -n "$need_node" ]; then
  command -v node >/dev/null || die "node is not installed"
  if [ ! -d bench/peers/node/node_modules/ws ]; then
    echo "npm install in bench/peers/node ..."
    (cd bench/peers/node && timeout 300 npm install --no-audit --no-fund --silent) || die "npm install failed"
  fi
fi
if [ "$SCENARIO" = http ] && [[ " ${TOOLS:-wrk load} " == *" wrk "* ]] && ! command -v wrk >/dev/null; then
  timeout 300 apt-get install -y -qq wrk >/dev/null || die "wrk is missing and apt-get install wrk failed"
fi

# ---- helpers -------------------------------------------------------------
TCK=$(getconf CLK_TCK)
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
sock_tcp() { awk '/^TCP:/ {print $3, $5, $7, $11}' /proc/net/sockstat; } # inuse orphan tw mem(pages)
# read_sockstat: sets TCP_INUSE and TCP_MEM (pages) from /proc/net/sockstat.
read_sockstat() {
  local k rest
  TCP_INUSE=0 TCP_MEM=0
  while read -r k rest; do
    if [ "$k" = TCP: ]; then
      # shellcheck disable=SC2086
      set -- $rest
      TCP_INUSE=$2 TCP_MEM=${10}
      return
    fi
  done </proc/net/sockstat
}
meminfo_kb() { awk -v k="$1:" '$1 == k {print $2}' /proc/meminfo; }

# start_peer NAME LOG [ARGS...]: starts a server on a free loopback port
# and sets SRV_PID, SRV_ADDR and, for warren, ADMIN_ADDR.
start_peer() {
  local name=$1 log=$2 i
  shift 2
  : >"$log"
  case $name in
    warren) "$BIN/warren" echo -addr 127.0.0.1:0 -admin 127.0.0.1:0 "$@" >"$log" 2>&1 & ;;
    warren-alt) "$WARREN_ALT" echo -addr 127.0.0.1:0 -admin 127.0.0.1:0 "$@" >"$log" 2>&1 & ;;
    gorilla | fasthttp | nethttp) "$BIN/$name-peer" -addr 127.0.0.1:0 "$@" >"$log" 2>&1 & ;;
    node) node bench/peers/node/server.js -addr 127.0.0.1:0 "$@" >"$log" 2>&1 & ;;
    *) die "unknown server $name" ;;
  esac
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  SRV_ADDR='' ADMIN_ADDR=''
  for ((i = 0; i < 150; i++)); do
    SRV_ADDR=$(grep -m1 -E 'listening' "$log" | grep -oE 'addr=[0-9.]+:[0-9]+' | cut -d= -f2 || true)
    ADMIN_ADDR=$(grep -m1 -E 'admin: listening' "$log" | grep -oE 'addr=[0-9.]+:[0-9]+' | cut -d= -f2 || true)
    if [ -n "$SRV_ADDR" ] && { [[ $name != warren* ]] || [ -n "$ADMIN_ADDR" ] || [[ " $* " == *" -admin "* ]]; }; then
      return 0
    fi
    kill -0 "$SRV_PID" 2>/dev/null || { cat "$log" >&2; die "$name exited at start"; }
    sleep 0.1
  done
  cat "$log" >&2
  die "$name did not print its address within 15 s"
}

# stop_server: stops SRV_PID and forgets it.
stop_server() {
  stop_pid "$SRV_PID" 20
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$SRV_PID" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# run_bounded SECONDS CMD...: runs CMD in the background (recorded in PIDS)
# and waits for it at most SECONDS; returns its exit status (124 on timeout).
run_bounded() {
  local t=$1 pid i rc=0
  shift
  "$@" &
  pid=$!
  PIDS+=("$pid")
  for ((i = 0; i < t * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$PROG: $1 still running after ${t}s; stopping it" >&2
    stop_pid "$pid" 5
    rc=124
  else
    wait "$pid" || rc=$?
  fi
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
  return "$rc"
}

# col SERVER COLUMN [EXTRA_FILTER_COL EXTRA_FILTER_VALUE]: median of a
# results column for one server.
col() {
  awk -F'\t' -v s="$1" -v c="$2" -v fc="${3:-0}" -v fv="${4:-}" \
    'NR > 1 && $1 == s && (fc == 0 || $fc == fv) && $c != "-" && $c != "" {print $c}' "$RESULTS" | median
}
# run_ratio SERVER REF COLUMN [FILTER_COL FILTER_VALUE]: the median over
# runs of SERVER's value divided by REF's in the same run (and case).
run_ratio() {
  awk -F'\t' -v s="$1" -v ref="$2" -v c="$3" -v fc="${4:-0}" -v fv="${5:-}" '
    NR > 1 && (fc == 0 || $fc == fv) && $c != "-" && $c != "" {if ($1 == s) a[$2] = $c; if ($1 == ref) b[$2] = $c}
    END {for (r in a) if ((r in b) && b[r] > 0) printf "%.3f\n", a[r] / b[r]}' "$RESULTS" | median
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.3f", a / b}'; }

read -r -a ORDER <<<"$SERVERS"
# order RUN: the servers, rotated by run.
order() {
  local run=$1 j
  for ((j = 0; j < ${#ORDER[@]}; j++)); do echo "${ORDER[$(((j + run - 1) % ${#ORDER[@]}))]}"; done
}

header() {
  echo "compare $SCENARIO: RUNS=$RUNS SERVERS=\"$SERVERS\" $*"
  echo "  $(machine_line)"
  echo "  $(date -u '+%F %T UTC'), warren at $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- engine http1 websocket prefork loadgen cmd 2>/dev/null || echo ' (uncommitted changes)'); logs in $LOGDIR"
}

# ---- ws-idle -------------------------------------------------------------
scenario_ws_idle() {
  local n=${N:-15000} hold=${HOLD:-10s} run s log json rc
  header "N=$n HOLD=$hold"
  printf 'server\trun\trss_start_kb\trss_held_kb\tconns\tbytes_per_conn\tconnect_rate\tanon_bytes_per_conn\n' >"$RESULTS"
  for ((run = 1; run <= RUNS; run++)); do
    for s in $(order "$run"); do
      log=$LOGDIR/$s-$run.log json=$LOGDIR/$s-$run.json
      start_peer "$s" "$log"
      sleep 1
      rc=0
      run_bounded 300 "$BIN/warren" load -url "ws://$SRV_ADDR/ws" -conns "$n" -src 60 -hold "$hold" \
        -server-pid "$SRV_PID" -timeout 30s -quiet -json "$json" >"$LOGDIR/$s-$run.load.txt" 2>&1 || rc=$?
      stop_server
      [ -s "$json" ] || { cat "$LOGDIR/$s-$run.load.txt" >&2; die "$s run $run: no report (exit $rc)"; }
      jq -r --arg s "$s" --arg r "$run" '[$s, $r, (.server.rss_start_bytes / 1024 | floor), (.server.rss_held_bytes / 1024 | floor),
        .connects, (.server.rss_per_conn_bytes | round), (.connect_rate | round),
        (.server.rss_anon_per_conn_bytes // null | if . == null then "-" else round end)] | @tsv' "$json" >>"$RESULTS"
      tail -n 1 "$RESULTS" | awk -F'\t' '{printf "  %-8s run %s: RSS %6d kB -> %7d kB, %6d conns open => %6d B/conn, anonymous %s B/conn (connects %d/s)\n", $1, $2, $3, $4, $5, $6, $8, $7}'
      [ "$rc" -eq 0 ] || echo "  $s run $run: warren load exited $rc (see $LOGDIR/$s-$run.load.txt)"
    done
  done
  echo
  echo "medians over $RUNS run(s), $n idle WebSocket connections:"
  printf '  %-8s %12s %12s %10s %14s %14s %14s\n' server start_kB held_kB conns "bytes/conn" "vs gorilla" "anon B/conn"
  local ref
  ref=$(col gorilla 6)
  for s in $SERVERS; do
    printf '  %-8s %12s %12s %10s %14s %14s %14s\n' "$s" "$(col "$s" 3)" "$(col "$s" 4)" "$(col "$s" 5)" "$(col "$s" 6)" "$(ratio "$(col "$s" 6)" "$ref")" "$(col "$s" 8)"
  done
}

# ---- http ----------------------------------------------------------------
scenario_http() {
  local conns=${CONNS:-128} dur=${DURATION:-10s} threads=${THREADS:-1} tools=${TOOLS:-wrk load}
  local run s log t0 t1 out reqs secs rc json
  header "CONNS=$conns DURATION=$dur THREADS=$threads TOOLS=\"$tools\""
  printf 'server\trun\ttool\trps\tcpu_us_per_req\tp50_ms\tp99_ms\terrors\n' >"$RESULTS"
  for ((run = 1; run <= RUNS; run++)); do
    for s in $(order "$run"); do
      log=$LOGDIR/$s-$run.log
      start_peer "$s" "$log"
      run_bounded 30 wrk -t"$threads" -c"$conns" -d2s "http://$SRV_ADDR/" >/dev/null 2>&1 || true # warm-up
      if [[ " $tools " == *" wrk "* ]]; then
        t0=$(cpu_ticks "$SRV_PID")
        out=$(timeout 120 wrk -t"$threads" -c"$conns" -d"$dur" --latency "http://$SRV_ADDR/")
        t1=$(cpu_ticks "$SRV_PID")
        echo "$out" >"$LOGDIR/$s-$run.wrk.txt"
        reqs=$(echo "$out" | awk '/requests in/ {print $1}')
        secs=$(echo "$out" | awk '/requests in/ {gsub("s,", "", $4); print $4}')
        awk -v s="$s" -v r="$run" -v n="$reqs" -v d="$secs" -v a="$t0" -v b="$t1" -v tck="$TCK" \
          -v p50="$(echo "$out" | awk '$1 == "50%" {print $2}')" -v p99="$(echo "$out" | awk '$1 == "99%" {print $2}')" \
          -v e="$(echo "$out" | awk '/Non-2xx|Socket errors/' | tr -s ' \n' ' ')" \
          'function ms(x) {if (x ~ /us$/) return x / 1000; if (x ~ /ms$/) return x + 0; if (x ~ /s$/) return x * 1000; return x}
           BEGIN {printf "%s\t%s\twrk\t%.0f\t%.2f\t%.3f\t%.3f\t%s\n", s, r, n / d, (b - a) / tck * 1e6 / n, ms(p50), ms(p99), (e == "" ? "-" : e)}' >>"$RESULTS"
        tail -n 1 "$RESULTS" | awk -F'\t' '{printf "  %-8s run %s %-4s: %8d req/s  %6.2f µs CPU/req  p50 %.3f ms  p99 %.3f ms  errors %s\n", $1, $2, $3, $4, $5, $6, $7, $8}'
      fi
      if [[ " $tools " == *" load "* ]]; then
        json=$LOGDIR/$s-$run.load.json
        rc=0
        run_bounded 120 "$BIN/warren" load -url "http://$SRV_ADDR/" -conns "$conns" -duration "$dur" \
          -server-pid "$SRV_PID" -quiet -json "$json" >"$LOGDIR/$s-$run.load.txt" 2>&1 || rc=$?
        [ -s "$json" ] || { cat "$LOGDIR/$s-$run.load.txt" >&2; die "$s run $run: no warren load report (exit $rc)"; }
        jq -r --arg s "$s" --arg r "$run" '[$s, $r, "load", (.throughput | round), ((.server.cpu_per_request_us // 0) * 100 | round / 100),
          (.latency.p50_ms * 1000 | round / 1000), (.latency.p99_ms * 1000 | round / 1000), ([.errors | to_entries[] | "\(.key)=\(.value)"] | join(",") | if . == "" then "-" else . end)] | @tsv' "$json" >>"$RESULTS"
        tail -n 1 "$RESULTS" | awk -F'\t' '{printf "  %-8s run %s %-4s: %8d req/s  %6.2f µs CPU/req  p50 %.3f ms  p99 %.3f ms  errors %s\n", $1, $2, $3, $4, $5, $6, $7, $8}'
      fi
      stop_server
    done
  done
  local tool ref
  for tool in $tools; do
    echo
    echo "medians over $RUNS run(s), $tool, $conns keep-alive connections, $dur:"
    printf '  %-8s %10s %12s %12s %14s %10s %10s\n' server "req/s" "CPU µs/req" "vs fasthttp" "(per-run med)" "p50 ms" "p99 ms"
    ref=$(col fasthttp 5 3 "$tool")
    for s in $SERVERS; do
      printf '  %-8s %10s %12s %12s %14s %10s %10s\n' "$s" "$(col "$s" 4 3 "$tool")" "$(col "$s" 5 3 "$tool")" \
        "$(ratio "$(col "$s" 5 3 "$tool")" "$ref")" "$(run_ratio "$s" fasthttp 5 3 "$tool")" "$(col "$s" 6 3 "$tool")" "$(col "$s" 7 3 "$tool")"
    done
  done
}

# ---- ws-echo -------------------------------------------------------------
scenario_ws_echo() {
  local n=${N:-15000} lprocs=${LOAD_PROCS:-2} rpss=${RPS:-10000 20000} dur=${DURATION:-20s}
  local size=${MSG_SIZE:-32} closed=${CLOSED_CONNS:-64} run s log json rc rps label
  header "N=$n LOAD_PROCS=$lprocs RPS=\"$rpss\" DURATION=$dur MSG_SIZE=$size CLOSED_CONNS=$closed"
  printf 'server\trun\tcase\tconns\tmsg_per_s\tcpu_us_per_msg\tp50_ms\tp99_ms\tp999_ms\tunanswered\terrors\n' >"$RESULTS"
  one() { # one LABEL ARGS... (server already running)
    local label=$1
    shift
    json=$LOGDIR/$s-$run-$label.json
    rc=0
    run_bounded 300 "$BIN/warren" load -url "ws://$SRV_ADDR/ws" -msg-size "$size" -duration "$dur" \
      -server-pid "$SRV_PID" -timeout 30s -quiet -json "$json" "$@" >"$LOGDIR/$s-$run-$label.txt" 2>&1 || rc=$?
    [ -s "$json" ] || { cat "$LOGDIR/$s-$run-$label.txt" >&2; die "$s run $run $label: no report (exit $rc)"; }
    jq -r --arg s "$s" --arg r "$run" --arg l "$label" '[$s, $r, $l, .connects, (.throughput | round),
      (.server.cpu_per_request_us * 100 | round / 100), (.latency.p50_ms * 1000 | round / 1000), (.latency.p99_ms * 1000 | round / 1000), (.latency.p99_9_ms * 1000 | round / 1000), .unanswered,
      ([.errors | to_entries[] | "\(.key)=\(.value)"] | join(",") | if . == "" then "-" else . end)] | @tsv' "$json" >>"$RESULTS"
    tail -n 1 "$RESULTS" | awk -F'\t' '{printf "  %-8s run %s %-14s %6d conns %8d msg/s  %6.2f µs CPU/msg  p50 %7.3f ms  p99 %8.3f ms  unanswered %s  errors %s\n", $1, $2, $3, $4, $5, $6, $7, $8, $10, $11}'
  }
  for ((run = 1; run <= RUNS; run++)); do
    for s in $(order "$run"); do
      log=$LOGDIR/$s-$run.log
      start_peer "$s" "$log"
      sleep 1
      for rps in $rpss; do
        one "open-$rps" -conns "$n" -procs "$lprocs" -src 60 -rps "$rps"
        # Let the server close the last run's connections before the next.
        sleep 3
      done
      if [ "$closed" -gt 0 ]; then one "closed-$closed" -conns "$closed"; fi
      stop_server
    done
  done
  local cases=() c ref
  for rps in $rpss; do cases+=("open-$rps"); done
  if [ "$closed" -gt 0 ]; then cases+=("closed-$closed"); fi
  for c in "${cases[@]}"; do
    echo
    echo "medians over $RUNS run(s), $c ($size-byte messages, $dur):"
    printf '  %-8s %8s %10s %12s %11s %14s %9s %9s %11s %11s\n' server conns "msg/s" "CPU µs/msg" "vs gorilla" "(per-run med)" "p50 ms" "p99 ms" "p99 vs gor" "p99.9 ms"
    ref=$(col gorilla 6 3 "$c")
    local refp99
    refp99=$(col gorilla 8 3 "$c")
    for s in $SERVERS; do
      printf '  %-8s %8s %10s %12s %11s %14s %9s %9s %11s %11s\n' "$s" "$(col "$s" 4 3 "$c")" "$(col "$s" 5 3 "$c")" "$(col "$s" 6 3 "$c")" \
        "$(ratio "$(col "$s" 6 3 "$c")" "$ref")" "$(run_ratio "$s" gorilla 6 3 "$c")" "$(col "$s" 7 3 "$c")" "$(col "$s" 8 3 "$c")" "$(ratio "$(col "$s" 8 3 "$c")" "$refp99")" "$(col "$s" 9 3 "$c")"
    done
  done
}

# ---- churn ---------------------------------------------------------------
scenario_churn() {
  local c=${C:-64} d=${D:-10s} modes=${MODES:-ws http} rounds=${ROUNDS:-2} settle=${SETTLE:-5}
  local run s mode log r fd0 rss0 fd rss out rc
  header "C=$c D=$d MODES=\"$modes\" ROUNDS=$rounds SETTLE=${settle}s"
  printf 'server\trun\tmode\tround\tcycles_per_s\terrors\tp99_ms\tfd_before\tfd_after\trss_before_kb\trss_after_kb\ttcp_tw\n' >"$RESULTS"
  for ((run = 1; run <= RUNS; run++)); do
    for s in $(order "$run"); do
      for mode in $modes; do
        log=$LOGDIR/$s-$run-$mode.log
        start_peer "$s" "$log"
        sleep 1
        fd0=$(fd_count "$SRV_PID") rss0=$(rss_kb "$SRV_PID")
        for ((r = 1; r <= rounds; r++)); do
          rc=0
          out=$(run_bounded 120 "$BIN/churn" -addr "$SRV_ADDR" -mode "$mode" -c "$c" -d "$d" -src-base "127.0.$((10 + r)).1" -src-count 120) || rc=$?
          echo "$out" >>"$LOGDIR/$s-$run-$mode.churn.json"
          [ -n "$out" ] || die "$s run $run $mode: churn printed nothing (exit $rc)"
          sleep "$settle"
          fd=$(fd_count "$SRV_PID") rss=$(rss_kb "$SRV_PID")
          echo "$out" | jq -r --arg s "$s" --arg r "$run" --arg m "$mode" --arg k "$r" --arg f0 "$fd0" --arg f1 "$fd" \
            --arg r0 "$rss0" --arg r1 "$rss" --arg tw "$(sock_tcp | cut -d' ' -f3)" \
            '[$s, $r, $m, $k, (.cycles_per_second | round), ((.attempts - .cycles) | tostring) + " of " + (.attempts | tostring),
              .cycle_latency_ms.p99, $f0, $f1, $r0, $r1, $tw] | @tsv' >>"$RESULTS"
          tail -n 1 "$RESULTS" | awk -F'\t' '{printf "  %-8s run %s %-4s round %s: %6d cycles/s  failed %-12s p99 %7.2f ms  fds %s -> %s  RSS %s -> %s kB  (TIME_WAIT %s)\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12}'
        done
        stop_server
      done
    done
  done
  local ref
  for mode in $modes; do
    echo
    echo "medians over $RUNS run(s) and $rounds round(s), mode $mode, $c workers, $d per round:"
    printf '  %-8s %12s %11s %10s %12s %12s %14s\n' server "cycles/s" "vs gorilla" "p99 ms" "fd before" "fd after" "RSS after kB"
    ref=$(awk -F'\t' -v m="$mode" 'NR > 1 && $1 == "gorilla" && $3 == m {print $5}' "$RESULTS" | median)
    for s in $SERVERS; do
      local cps
      cps=$(awk -F'\t' -v s="$s" -v m="$mode" 'NR > 1 && $1 == s && $3 == m {print $5}' "$RESULTS" | median)
      printf '  %-8s %12s %11s %10s %12s %12s %14s\n' "$s" "$cps" "$(ratio "$cps" "$ref")" \
        "$(awk -F'\t' -v s="$s" -v m="$mode" 'NR > 1 && $1 == s && $3 == m {print $7}' "$RESULTS" | median)" \
        "$(awk -F'\t' -v s="$s" -v m="$mode" 'NR > 1 && $1 == s && $3 == m {print $8}' "$RESULTS" | median)" \
        "$(awk -F'\t' -v s="$s" -v m="$mode" 'NR > 1 && $1 == s && $3 == m {print $9}' "$RESULTS" | median)" \
        "$(awk -F'\t' -v s="$s" -v m="$mode" 'NR > 1 && $1 == s && $3 == m {print $11}' "$RESULTS" | median)"
    done
  done
}

# ---- drain ---------------------------------------------------------------
scenario_drain() {
  local n=${N:-2000} dt=${DRAIN_TIMEOUT:-10s} run s log dlog dpid i rc t0 t1 ready exit_ms wrc
  local dts=${dt%s}
  header "N=$n DRAIN_TIMEOUT=$dt"
  printf 'server\trun\topened\tgot_1001\tother\tno_close\tstill_open\tserver_exit\texit_ms\tlast_close_ms\n' >"$RESULTS"
  for ((run = 1; run <= RUNS; run++)); do
    for s in $(order "$run"); do
      log=$LOGDIR/$s-$run.log dlog=$LOGDIR/$s-$run.wsdrain.txt
      if [[ $s == warren* ]]; then start_peer "$s" "$log" -drain-timeout "$dt"; else start_peer "$s" "$log"; fi
      "$BIN/wsdrain" -addr "$SRV_ADDR" -n "$n" -wait "$((dts + 20))s" >"$dlog" 2>&1 &
      dpid=$!
      PIDS+=("$dpid")
      ready=
      for ((i = 0; i < 600; i++)); do
        ready=$(awk '/^READY / {print $2}' "$dlog")
        [ -n "$ready" ] && break
        kill -0 "$dpid" 2>/dev/null || break
        sleep 0.1
      done
      [ -n "$ready" ] || { cat "$dlog" >&2; die "$s run $run: wsdrain not READY within 60 s"; }
      t0=$(date +%s%N)
      kill -TERM "$SRV_PID"
      rc=
      for ((i = 0; i < (dts + 10) * 50; i++)); do
        kill -0 "$SRV_PID" 2>/dev/null || break
        sleep 0.02
      done
      t1=$(date +%s%N)
      if kill -0 "$SRV_PID" 2>/dev/null; then
        rc=timeout
        exit_ms=-
        stop_pid "$SRV_PID" 1
      else
        wait "$SRV_PID" && rc=0 || rc=$?
        exit_ms=$(((t1 - t0) / 1000000))
      fi
      wrc=0
      for ((i = 0; i < (dts + 30) * 10; i++)); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$dpid" 2>/dev/null && stop_pid "$dpid" 2
      wait "$dpid" 2>/dev/null || wrc=$?
      PIDS=()
      [ "$wrc" -eq 0 ] || echo "  $s run $run: wsdrain exited $wrc (not every connection got 1001)"
      grep '^{' "$dlog" | jq -r --arg s "$s" --arg r "$run" --arg rc "$rc" --arg ms "$exit_ms" \
        '[$s, $r, .opened, .got_1001, (.other_close_codes | tojson), (.ended_without_close | tojson), .still_open, $rc, $ms,
          (.last_end_after_ready_ms | round)] | @tsv' >>"$RESULTS"
      tail -n 1 "$RESULTS" | awk -F'\t' '{printf "  %-8s run %s: %s opened, %s got 1001, other %s, no close %s, still open %s; server exit %s after %s ms (last client closed at %s ms)\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10}'
    done
  done
}

# ---- c120k ---------------------------------------------------------------
scenario_c120k() {
  local n=${N:-120000} per=${PER_PROC:-17500}
  local sprocs=${SPROCS:-$(((n + per - 1) / per))} lprocs=${LPROCS:-$(((n + per - 1) / per))}
  local rate=${RATE:-3000} hold=${HOLD:-30s} trps=${TRAFFIC_RPS:-10000} traffic=${TRAFFIC:-20s}
  local src=${SRC:-$((n / 4000 + 10))} minavail=${MIN_AVAIL_MB:-3072}
  local log=$LOGDIR/server.log json=$LOGDIR/load.json svg=$LOGDIR/svg limit
  header "N=$n SPROCS=$sprocs LPROCS=$lprocs RATE=$rate HOLD=$hold TRAFFIC_RPS=$trps TRAFFIC=$traffic SRC=$src"
  [ $((n / sprocs)) -le 19000 ] || die "N=$n over SPROCS=$sprocs is more than 19,000 connections per server process"
  [ $((n / lprocs)) -le 19000 ] || die "N=$n over LPROCS=$lprocs is more than 19,000 connections per client process"
  limit=$(((n / rate) + ${hold%s} + ${traffic%s} + 180))
  local before_slab before_avail base_inuse
  before_slab=$(meminfo_kb Slab) before_avail=$(meminfo_kb MemAvailable)
  read_sockstat
  base_inuse=$TCP_INUSE

  "$BIN/warren" echo -procs "$sprocs" -addr 127.0.0.1:0 -admin 127.0.0.1:0 >"$log" 2>&1 &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  local i addr admin
  for ((i = 0; i < 300; i++)); do
    addr=$(grep -m1 'warren echo listening' "$log" | grep -oE 'addr=[0-9.]+:[0-9]+' | cut -d= -f2 || true)
    admin=$(grep -m1 'admin: listening' "$log" | grep -oE 'addr=[0-9.]+:[0-9]+' | cut -d= -f2 || true)
    if [ -n "$addr" ] && [ -n "$admin" ] && curl -fsS -m 2 "http://$admin/readyz" >/dev/null 2>&1; then break; fi
    kill -0 "$SRV_PID" 2>/dev/null || { cat "$log" >&2; die "prefork server exited at start"; }
    sleep 0.1
  done
  curl -fsS -m 2 "http://$admin/readyz" >/dev/null || { cat "$log" >&2; die "prefork workers not ready within 30 s"; }
  local wpids
  wpids=$(curl -fsS -m 5 "http://$admin/workers" | jq -r '.[].pid' | tr '\n' ' ')
  echo "  server parent pid $SRV_PID, workers: $wpids; listening on $addr, admin $admin"
  # Shell built-ins only: with a hundred processes a fork per read would
  # slow the monitor down on a loaded machine.
  sum_rss() {
    local p t=0 k v rest
    for p in "$@"; do
      while read -r k v rest; do
        if [ "$k" = VmRSS: ]; then t=$((t + v)); break; fi
      done 2>/dev/null <"/proc/$p/status" || true
    done
    echo "$t"
  }
  sum_cpu() { # utime + stime in ticks; the command names here have no spaces
    local p t=0 f
    for p in "$@"; do
      read -r -a f 2>/dev/null <"/proc/$p/stat" || continue
      t=$((t + f[13] + f[14]))
    done
    echo "$t"
  }
  # shellcheck disable=SC2086
  local rss_base cpu_base
  # shellcheck disable=SC2086
  rss_base=$(sum_rss $wpids) cpu_base=$(sum_cpu $wpids)

  local args=(-url "ws://$addr/ws" -conns "$n" -procs "$lprocs" -rate "$rate" -src "$src" -hold "$hold"
    -admin "http://$admin" -timeout 30s -json "$json" -svg "$svg" -max-errors 1)
  if [ "$trps" != 0 ]; then args+=(-rps "$trps" -duration "$traffic"); fi
  "$BIN/warren" load "${args[@]}" >"$LOGDIR/load.txt" 2>"$LOGDIR/load.progress" &
  local lpid=$!
  PIDS+=("$lpid")
  echo "  warren load ${args[*]}"

  # Monitor every 2 s: connections (from /proc/net/sockstat: both ends are
  # on this machine, so (TCP sockets in use - before) / 2), memory, kernel
  # memory, the load's phase; abort when MemAvailable runs low. Built-ins
  # where it matters: with a hundred processes on two busy cores a fork per
  # figure would slow the monitor down.
  local mon=$LOGDIR/monitor.tsv start=$SECONDS t=0 it=0 conns peak=0 peak_line='' held_line='' held_conns=0 line
  local stop_reason=completed avail phase admin_conns=- cl
  printf 't_s\tphase\tconns\tconns_admin\tworker_rss_kb\tclient_rss_kb\tslab_kb\tsunreclaim_kb\ttcp_mem_pages\tmem_available_kb\tworker_cpu_s\tload1\n' >"$mon"
  while kill -0 "$lpid" 2>/dev/null; do
    t=$((SECONDS - start))
    if [ "$t" -ge "$limit" ]; then stop_reason="time limit ${limit}s"; break; fi
    if [ $((it % 5)) -eq 0 ]; then # the merged /metrics of many workers is not free
      admin_conns=$({ curl -fsS -m 5 "http://$admin/metrics" 2>/dev/null || true; } | awk '/^warren_connections_active/ {s += $NF; n++} END {print n ? s : "-"}')
    fi
    read_sockstat
    conns=$(((TCP_INUSE - base_inuse) / 2))
    avail=$(meminfo_kb MemAvailable)
    phase=$(sed -n '$s/^\[[^]]*\] *\([a-z-]*\).*/\1/p' "$LOGDIR/load.progress")
    cl=$({ pgrep -P "$lpid" || true; } | tr '\n' ' ')
    # shellcheck disable=SC2086
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "${phase:--}" "$conns" "$admin_conns" "$(sum_rss $wpids)" "$(sum_rss $cl "$lpid")" \
      "$(meminfo_kb Slab)" "$(meminfo_kb SUnreclaim)" "$TCP_MEM" "$avail" \
      "$(awk -v a="$(sum_cpu $wpids)" -v b="$cpu_base" -v tck="$TCK" 'BEGIN {printf "%.1f", (a - b) / tck}')" "$(cut -d' ' -f1 /proc/loadavg)" >>"$mon"
    line=$(tail -n 1 "$mon")
    if [ "$conns" -gt "$peak" ]; then peak=$conns peak_line=$line; fi
    # Progress lines lag: the load may be closing connections while the
    # last one still says hold, so keep the hold sample with the most.
    if [ "$phase" = hold ] && [ "$conns" -ge "$held_conns" ]; then held_line=$line held_conns=$conns; fi
    if [ "$avail" -lt $((minavail * 1024)) ]; then stop_reason="MemAvailable below ${minavail} MB"; break; fi
    if [ $((it % 5)) -eq 0 ]; then
      echo "$line" | awk -F'\t' '{printf "  [%4ss] %-8s conns %7d (admin %s)  worker RSS %7.1f MB  client RSS %7.1f MB  slab %7.1f MB  MemAvailable %7.1f MB  worker CPU %6.1fs  load %s\n", $1, $2, $3, $4, $5 / 1024, $6 / 1024, $7 / 1024, $10 / 1024, $11, $12}'
    fi
    it=$((it + 1))
    sleep 2
  done
  if kill -0 "$lpid" 2>/dev/null; then
    echo "  stopping warren load: $stop_reason"
    stop_pid "$lpid" 15
  else
    wait "$lpid" || echo "  warren load exited $?"
  fi
  echo
  # The figures: the hold-phase sample with the most connections (all open
  # and idle), or the sample with the most connections when there was none.
  local at=$held_line what="the hold"
  if [ -z "$at" ]; then at=$peak_line what="the peak"; fi
  echo "  peak: $peak connections; stop: $stop_reason"
  printf 'n\tsprocs\tlprocs\tsample\tconns\tworker_rss_base_kb\tworker_rss_kb\tworker_bytes_per_conn\tclient_bytes_per_conn\tslab_bytes_per_conn\tmem_available_drop_per_conn\tadmin_bytes_per_conn_held\tcpu_ramp_s\tcpu_hold_s\tcpu_us_per_msg\tmsg_per_s\tp50_ms\tp99_ms\tstop\n' >"$RESULTS"
  if [ -n "$at" ]; then
    echo "$at" | awk -F'\t' -v what="$what" -v rb="$rss_base" -v sb="$before_slab" -v ab="$before_avail" \
      '{n = ($3 > 0) ? $3 : 1
        printf "  at %s (t=%ss, %d connections): worker RSS %.1f MB (%.0f B/conn over the baseline %.1f MB), client RSS %.1f MB (%.0f B/conn), slab +%.1f MB (%.0f B/conn, both ends), MemAvailable %.1f MB (-%.0f B/conn, both ends and both processes)\n",
          what, $1, $3, $5 / 1024, ($5 - rb) * 1024 / n, rb / 1024, $6 / 1024, $6 * 1024 / n, ($7 - sb) / 1024, ($7 - sb) * 1024 / n, $10 / 1024, (ab - $10) * 1024 / n}'
  fi
  {
    echo "${at:-x}" | awk -F'\t' -v N="$n" -v sp="$sprocs" -v lp="$lprocs" -v what="$what" -v rb="$rss_base" -v sb="$before_slab" -v ab="$before_avail" \
      '{n = ($3 > 0) ? $3 : 1; printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t", N, sp, lp, what, $3, rb, $5, ($5 - rb) * 1024 / n, $6 * 1024 / n, ($7 - sb) * 1024 / n, (ab - $10) * 1024 / n}'
    if [ -s "$json" ]; then
      jq -r '[(.server.rss_per_conn_bytes | round), (.server.cpu_ramp_seconds * 100 | round / 100), (.server.cpu_hold_seconds * 100 | round / 100), ((.server.cpu_per_request_us // 0) * 100 | round / 100),
        ((.throughput // 0) | round), ((.latency.p50_ms // 0) * 1000 | round / 1000), ((.latency.p99_ms // 0) * 1000 | round / 1000)] | @tsv' "$json" | tr '\n' '\t'
    else
      printf -- '-\t-\t-\t-\t-\t-\t-\t'
    fi
    echo "$stop_reason"
  } >>"$RESULTS"
  if [ -s "$json" ]; then
    jq -r '"  warren load: \(.connects) connects of \(.conns_asked) asked, \(.conns_failed) failed, peak \(.conns_peak) open; ramp \(.ramp_seconds | . * 10 | round / 10) s at \(.connect_rate | round) conn/s; connect p99 \(.connect_latency.p99_ms) ms",
      "  server (admin, sum of workers): RSS \(.server.rss_start_bytes / 1048576 | . * 10 | round / 10) MB -> \(.server.rss_held_bytes / 1048576 | . * 10 | round / 10) MB held = \(.server.rss_per_conn_bytes | round) B/conn; CPU ramp \(.server.cpu_ramp_seconds * 100 | round / 100) s, hold \(.server.cpu_hold_seconds * 100 | round / 100) s, traffic \(.server.cpu_traffic_seconds * 100 | round / 100) s = \(.server.cpu_per_request_us // 0 | . * 100 | round / 100) µs/msg",
      "  traffic: \(.throughput | round) msg/s over \(.connects) conns, p50 \(.latency.p50_ms) ms, p99 \(.latency.p99_ms) ms, unanswered \(.unanswered), errors \(.errors | tojson)"' "$json"
  fi
  echo "  sockstat now: $(grep '^TCP:' /proc/net/sockstat)"
  sleep 3
  echo "  after the load closed: server conns $({ curl -fsS -m 5 "http://$admin/metrics" 2>/dev/null || true; } | awk '/^warren_connections_active/ {s += $NF} END {print s + 0}'), worker fds $(for p in $wpids; do fd_count "$p"; done | awk '{s += $1} END {print s}')"
  stop_server
  echo "  monitor: $mon; charts: $svg/"
}

case $SCENARIO in
  ws-idle) scenario_ws_idle ;;
  http) scenario_http ;;
  ws-echo) scenario_ws_echo ;;
  churn) scenario_churn ;;
  drain) scenario_drain ;;
  c120k) scenario_c120k ;;
esac
echo
echo "per-run figures: $RESULTS"
