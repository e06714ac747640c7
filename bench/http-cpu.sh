#!/usr/bin/env bash
# Server CPU time per keep-alive request: warren vs fasthttp (and net/http),
# each serving GET / -> "hello", under the same wrk load in the same run.
#
#   bench/http-cpu.sh            # RUNS=3 DURATION=10s CONNS=128 THREADS=1
#
# Reports per server: requests/s, server CPU µs per request (utime+stime from
# /proc/PID/stat over the wrk run), and the ratio to fasthttp. Medians over
# RUNS. Needs wrk (apt-get install wrk); builds the servers itself.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-128}
THREADS=${THREADS:-1}
OUT=bench/out
mkdir -p "$OUT"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
go build -o "$OUT/warren" ./cmd/warren
(cd bench/peers/fasthttp && go build -o "../../out/fasthttp-hello" .)
(cd bench/peers/nethttp && go build -o "../../out/nethttp-hello" .)

pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

# start NAME CMD... : starts a server on a free port, sets PID and ADDR.
start() {
  local name=$1; shift
  local log="$OUT/$name.log"
  "$@" >"$log" 2>&1 &
  PID=$!
  pids+=("$PID")
  for _ in $(seq 1 100); do
    ADDR=$(grep -o 'addr=[^ ]*' "$log" | head -1 | cut -d= -f2 || true)
    [ -n "$ADDR" ] && break
    sleep 0.1
  done
  [ -n "$ADDR" ] || { echo "$name did not start"; cat "$log"; exit 1; }
}

run_one() { # NAME CMD... -> prints "rps cpu_us_per_req"
  local name=$1; shift
  start "$name" "$@"
  wrk -t"$THREADS" -c"$CONNS" -d2s "http://$ADDR/" >/dev/null 2>&1 || true   # warm-up
  local t0; t0=$(cpu_ticks "$PID")
  local out; out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" "http://$ADDR/")
  local t1; t1=$(cpu_ticks "$PID")
  kill "$PID"; wait "$PID" 2>/dev/null || true
  local reqs; reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  local secs; secs=$(echo "$out" | awk '/requests in/ {gsub("s,","",$4); print $4}')
  local errs; errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
  [ -n "$errs" ] && echo "  $name: $errs" >&2
  awk -v r="$reqs" -v s="$secs" -v a="$t0" -v b="$t1" -v tck="$tck" \
    'BEGIN { printf "%.0f %.2f\n", r/s, (b-a)/tck*1e6/r }'
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

declare -A RPS CPU
names=(warren fasthttp nethttp)
for i in $(seq 1 "$RUNS"); do
  for name in "${names[@]}"; do
    case $name in
      warren)   res=$(run_one warren "$OUT/warren" echo -addr 127.0.0.1:0 -admin 127.0.0.1:0) ;;
      fasthttp) res=$(run_one fasthttp "$OUT/fasthttp-hello" -addr 127.0.0.1:0) ;;
      nethttp)  res=$(run_one nethttp "$OUT/nethttp-hello" -addr 127.0.0.1:0) ;;
    esac
    RPS[$name]+="${res% *} "; CPU[$name]+="${res#* } "
    echo "run $i $name: rps ${res% *}, cpu µs/req ${res#* }"
  done
done

echo
printf '%-10s %12s %14s %12s\n' server "req/s" "cpu µs/req" "vs fasthttp"
fcpu=$(echo "${CPU[fasthttp]}" | tr ' ' '\n' | grep . | median)
for name in "${names[@]}"; do
  r=$(echo "${RPS[$name]}" | tr ' ' '\n' | grep . | median)
  c=$(echo "${CPU[$name]}" | tr ' ' '\n' | grep . | median)
  printf '%-10s %12.0f %14.2f %12.2f\n' "$name" "$r" "$c" "$(awk -v a="$c" -v b="$fcpu" 'BEGIN{print a/b}')"
done
echo "(medians of $RUNS runs; wrk -t$THREADS -c$CONNS -d$DURATION; $(nproc) cores; $(date -u +%F))"
