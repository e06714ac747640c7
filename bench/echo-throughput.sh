#!/usr/bin/env bash
# echo-throughput.sh — echo round trips per second and server CPU per round
# trip, warren against Go's goroutine-per-connection net package in the
# same run.
#
#   bench/echo-throughput.sh                   C=64 connections, 64-byte messages, 10 s, 3 runs
#   C=1 D=5 bench/echo-throughput.sh           one connection: latency-bound
#   PIN=1 bench/echo-throughput.sh             server on CPU 0, client on CPU 1
#
# For every run and server it starts the server on a free loopback port and
# runs bench/cmd/echoclient against it: C connections, each with one
# SIZE-byte round trip in flight, for WARMUP then D seconds. echoclient reads
# the server's utime+stime from /proc/PID/stat at the start and end of the
# measured window, so CPU per round trip covers exactly the round trips
# counted. Medians over RUNS runs and the ratios warren/netecho close the
# report. Server order rotates between runs.
#
# The client shares the machine with the server: round trips per second are
# bounded by both, while server CPU per round trip is the server's own cost.
#
# Environment: C (64), SIZE (64), D (10 s), WARMUP (1 s), RUNS (3), SERVERS
# ("warren netecho"; also portable, enginehost), PIN (unset; 1 pins the
# server to CPU 0 and the client to CPU 1, which also makes the servers see
# one CPU: GOMAXPROCS=1, one loop), OUT (bench/out). GOGC and GOMEMLIMIT,
# when set, apply to every server alike.
#
# Linux only (it reads /proc). Every wait is bounded; every process it
# starts is stopped by pid on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

C=${C:-64}
SIZE=${SIZE:-64}
D=${D:-10}
WARMUP=${WARMUP:-1}
RUNS=${RUNS:-3}
SERVERS=${SERVERS:-"warren netecho"}
PIN=${PIN:-}
OUT=${OUT:-bench/out}

PROG=echo-throughput
# shellcheck source=bench/lib.sh
. bench/lib.sh
[ -r /proc/self/stat ] || die "needs Linux /proc"
for s in $SERVERS; do check_server "$s"; done
SRV_WRAP=()
CLI_WRAP=()
if [ -n "$PIN" ]; then
  command -v taskset >/dev/null || die "PIN needs taskset"
  [ "$(nproc)" -ge 2 ] || die "PIN needs two CPUs"
  SRV_WRAP=(taskset -c 0)
  CLI_WRAP=(taskset -c 1)
fi

# Binaries go to a directory of this script's own, so another benchmark
# rebuilding bench/out/warren at the same time cannot swap them mid-run.
BIN=$OUT/$PROG
mkdir -p "$BIN"
echo "building into $BIN ..."
go build -o "$BIN/warren" ./cmd/warren
for p in echoclient netecho enginehost; do go build -o "$BIN/$p" "./bench/cmd/$p"; done
LOGDIR=$OUT/logs/echo-throughput-$(date +%Y%m%d-%H%M%S)
mkdir -p "$LOGDIR"
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

RESULTS=$LOGDIR/results.tsv
printf 'server\trun\trps\tp50_us\tp99_us\tserver_cpu_us_rt\tclient_cpu_us_rt\tround_trips\n' >"$RESULTS"

field() { # field NAME JSON: a number from echoclient's JSON line
  echo "$2" | sed -E "s/.*\"$1\":(-?[0-9.e+-]+).*/\1/"
}

measure() { # measure SERVER RUN
  local name=$1 run=$2 log clog json cpid i
  log=$LOGDIR/$name-$run.log
  clog=$LOGDIR/$name-$run-client.log
  start_server "$name" "$log" "${SRV_WRAP[@]}"
  sleep 0.5
  : >"$clog"
  "${CLI_WRAP[@]}" "$BIN/echoclient" -addr "$SRV_ADDR" -c "$C" -size "$SIZE" -d "${D}s" -warmup "${WARMUP}s" \
    -server-pid "$SRV_PID" -clk-tck "$CLK_TCK" >"$clog" 2>&1 &
  cpid=$!
  PIDS+=("$cpid")
  # echoclient bounds itself (deadlines at D + WARMUP + 10 s); this is a
  # backstop.
  for ((i = 0; i < (D + WARMUP + 30) * 10; i++)); do
    kill -0 "$cpid" 2>/dev/null || break
    sleep 0.1
  done
  stop_pid "$cpid" 5
  json=$(grep '^{' "$clog" | tail -n 1 || true)
  [ -n "$json" ] || { cat "$clog" >&2; die "$name run $run: echoclient printed no result"; }
  [ "$(field errors "$json")" = 0 ] || echo "$PROG: warning: $name run $run: $(field errors "$json") connection errors" >&2
  stop_pid "$SRV_PID" 15
  PIDS=()
  printf '%s\t%s\t%.0f\t%.1f\t%.1f\t%.2f\t%.2f\t%s\n' "$name" "$run" "$(field rps "$json")" "$(field p50_us "$json")" \
    "$(field p99_us "$json")" "$(field server_cpu_us_rt "$json")" "$(field client_cpu_us_rt "$json")" \
    "$(field round_trips "$json")" >>"$RESULTS"
  tail -n 1 "$RESULTS" | awk -F'\t' '{printf "  %-10s run %d: %9.0f rt/s  p50 %8.1f us  p99 %9.1f us  server CPU %6.2f us/rt  client CPU %6.2f us/rt\n", $1, $2, $3, $4, $5, $6, $7}'
}

read -r -a order <<<"$SERVERS"
echo "$PROG: C=$C SIZE=$SIZE D=${D}s WARMUP=${WARMUP}s RUNS=$RUNS SERVERS=\"$SERVERS\" PIN=${PIN:-off} GOGC=${GOGC:-default} GOMEMLIMIT=${GOMEMLIMIT:-default}"
echo "  $(machine_line)"
echo "  engine at $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- engine internal cmd 2>/dev/null || echo ' (uncommitted changes)'); logs in $LOGDIR"
for ((run = 1; run <= RUNS; run++)); do
  for ((j = 0; j < ${#order[@]}; j++)); do
    measure "${order[$(((j + run - 1) % ${#order[@]}))]}" "$run"
  done
done

col() { awk -F'\t' -v s="$1" -v c="$2" 'NR > 1 && $1 == s && $c >= 0 {print $c}' "$RESULTS" | median; }
echo
echo "medians over $RUNS run(s), C=$C SIZE=$SIZE D=${D}s; load average now $(cut -d' ' -f1-3 /proc/loadavg):"
printf '  %-10s %12s %10s %10s %16s %16s\n' server rt/s p50_us p99_us server_cpu_us/rt client_cpu_us/rt
for s in $SERVERS; do
  printf '  %-10s %12s %10s %10s %16s %16s\n' "$s" "$(col "$s" 3)" "$(col "$s" 4)" "$(col "$s" 5)" "$(col "$s" 6)" "$(col "$s" 7)"
done
if [[ " $SERVERS " == *" netecho "* ]]; then
  echo
  echo "ratios of medians against netecho measured in the same run (server CPU/rt: lower is better; rt/s: higher is better):"
  for s in $SERVERS; do
    [ "$s" = netecho ] && continue
    awk -v s="$s" -v cpu="$(col "$s" 6)" -v pcpu="$(col netecho 6)" -v rps="$(col "$s" 3)" -v prps="$(col netecho 3)" \
      -v p50="$(col "$s" 4)" -v pp50="$(col netecho 4)" -v p99="$(col "$s" 5)" -v pp99="$(col netecho 5)" \
      'BEGIN {printf "  %-10s / netecho: server CPU/rt %.3f   rt/s %.3f   p50 %.3f   p99 %.3f\n", s, cpu / pcpu, rps / prps, p50 / pp50, p99 / pp99}'
  done
fi
echo
echo "per-run figures: $RESULTS"
