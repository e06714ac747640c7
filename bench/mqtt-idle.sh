#!/usr/bin/env bash
# mqtt-idle.sh — broker memory per idle MQTT client, each subscribed to a
# topic of its own: warren's broker (bench/cmd/mqtthost) against Debian's
# mosquitto 2.x, started by this script, in the same run.
#
#   bench/mqtt-idle.sh                 15,000 clients, 3 runs
#   N=5000 RUNS=1 bench/mqtt-idle.sh   smaller and quicker
#   V5=1 bench/mqtt-idle.sh            MQTT 5.0 clients
#   DEVICES=1 bench/mqtt-idle.sh       clients shaped as warren serve's devices:
#                                      client id dev-<i> (also the user name),
#                                      subscribed to devices/dev-<i>/commands/+
#   WILL=1 bench/mqtt-idle.sh          each client with a small will ("offline"
#                                      at QoS 1 on status/<i>), the usual
#                                      IoT last will (docs/mqtt.md: what a
#                                      will costs)
#
# For every run and server it starts the broker on a free loopback port,
# takes its baseline RSS (median of 3 samples over a second), opens N
# connections with bench/cmd/mqttidle (CONNECT, SUBSCRIBE idle/<i>, no
# keep-alive), waits for READY, lets the broker settle for SETTLE seconds,
# takes the median of SAMPLES RSS samples over SPAN seconds and reports
# (RSS_loaded - RSS_baseline) / clients. Medians over RUNS runs and the
# ratio warren / mosquitto close the report. Server order rotates.
#
# The method is the one of bench/idle-mem.sh, the same for both servers:
# RSS is sampled with the runtimes as shipped (no GC forced, nothing
# returned to the OS on request: the Go runtime keeps its GC headroom as
# glibc's malloc keeps its free lists), SETTLE seconds after the last
# client is up. For warren it then also reports the live Go heap+stacks
# per client (bench/cmd/mqtthost's MEMSTATS on SIGUSR1, after a forced
# GC, baseline taken the same way), which is what the broker's data
# structures cost without the GC's headroom. For both servers it also
# reports the anonymous RSS per client (RssAnon, loaded minus baseline):
# the RSS delta less file-backed pages, of which a Go binary's code first
# touched by the first client is the bulk (~0.7 MB for mqtthost, ~46 B
# per client at 15,000; next to nothing for mosquitto). GOGC and GOMEMLIMIT, when
# set, apply to warren and are printed.
#
# The collector's target: mqtthost runs with warren serve's -gogc default,
# 25, unless GOGC is set (its -gogc flag defaults to $GOGC, else 25; since
# docs/benchmarks.md §79), so the broker is measured as shipped. GOGC=100
# measures it with the runtime's default, as every run that did not set
# GOGC did before §79. The script gives mqtthost GOGC (25 unless set), so that
# both sides of an A/B (this script run in two checkouts) run with the
# same target: a broker older than §79, which has no -gogc flag, gets it
# through the runtime's own GOGC. mqtthost's listening line names the
# target in effect (gogc=N), and the report shows it.
#
# WARM=1 takes each server's baseline after a first ramp: N clients
# connect, subscribe, are held WARM_HOLD seconds (2) and close, and the
# baseline is taken SETTLE seconds later; the figure is then what the
# clients cost a server that has held them once (its allocator's free
# lists and the Go runtime's per-size-class metadata already made), not
# what the first ramp of a fresh process costs. Off by default: the
# benchmark's definition is the fresh process.
#
# STEP=K (5000) also reports the marginal cost of a client, free of every
# fixed cost whichever server: the clients connect in two stages, K first
# (RSS sampled as at the end, SETTLE seconds after they are up), then the
# other N-K by a second client process; the marginal figure is
# (RSS_N - RSS_K) / (N - K), and the same for the anonymous RSS. What the
# first collections of a Go process make (docs/benchmarks.md §61), the
# binary's pages and the allocators' arenas are all paid before K. The
# headline figure stays (RSS_N - RSS_baseline) / N, the issue's
# definition; STEP=0 opens all N at once (as before §75).
#
# START_GC=0 runs warren's broker without the collection at the end of
# start-up (mqtthost -start-gc=false; warren serve's -memtrim-start=false),
# to measure what it moves; by default the broker runs it, as shipped.
#
# MEMTRIM=BYTES runs warren's broker with warren serve's trim after bursts
# (-memtrim-burst BYTES: its free memory returned to the OS after the
# clients' ramp); off by default.
#
# Environment: N (15000), RUNS (3), SERVERS ("warren mosquitto"), V5 (0), DEVICES (0), WARM (0),
# WARM_HOLD (2), MEMTRIM (off), STEP (5000), START_GC (1),
# CONC (200), SETTLE (2), SAMPLES (7), SPAN (3), OPEN_TIMEOUT (120), OUT
# (bench/out). Linux only; installs Debian's mosquitto with apt-get if it is missing.
# Every process it starts is stopped by pid on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-15000}
RUNS=${RUNS:-3}
SERVERS=${SERVERS:-"warren mosquitto"}
V5=${V5:-0}
DEVICES=${DEVICES:-0}
WARM=${WARM:-0}
WARM_HOLD=${WARM_HOLD:-2}
STEP=${STEP:-5000}
START_GC=${START_GC:-1}
startgc=() # mqtthost runs it by default (as shipped); a broker older than §75 has no such flag
[ "$START_GC" = 1 ] || startgc=(-start-gc=false)
shape=()
if [ "$DEVICES" = 1 ]; then shape=(-id 'dev-%d' -filter 'devices/dev-%d/commands/+' -user); fi
WILL=${WILL:-0}
if [ "$WILL" = 1 ]; then shape+=(-will 'status/%d'); fi
CONC=${CONC:-200}
SETTLE=${SETTLE:-2}
SAMPLES=${SAMPLES:-7}
SPAN=${SPAN:-3}
OPEN_TIMEOUT=${OPEN_TIMEOUT:-120}
OUT=${OUT:-bench/out}
BROKER_GOGC=${GOGC:-25} # mqtthost's, both sides of an A/B alike (above)

PROG=mqtt-idle
# shellcheck source=bench/lib.sh
. bench/lib.sh
[ -r /proc/self/status ] || die "needs Linux /proc"
[ "$N" -le 19000 ] || die "N=$N: one client process holds at most ~19000 connections"
if [ "$STEP" -gt 0 ] && [ "$STEP" -ge "$N" ]; then die "STEP=$STEP must be under N=$N (or 0: off)"; fi
# Debian's mosquitto is installed (apt-get) when a run wants it and it is missing.
if [[ " $SERVERS " == *" mosquitto "* ]] && ! command -v mosquitto >/dev/null; then
  echo "installing mosquitto (apt-get) ..."
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto; } >/dev/null 2>&1 ||
    die "mosquitto is missing and apt-get install mosquitto failed"
  command -v mosquitto >/dev/null || die "mosquitto not installed (apt-get install mosquitto)"
fi
ulimit -n "$(ulimit -Hn)"

sample_rss() {
  local pid=$1 count=$2 span=$3 gap i
  gap=$(awk -v s="$span" -v c="$count" 'BEGIN {print (c > 1) ? s / (c - 1) : 0}')
  for ((i = 0; i < count; i++)); do
    kill -0 "$pid" 2>/dev/null || die "server pid $pid died while sampling"
    rss_kb "$pid"
    if [ "$i" -lt $((count - 1)) ]; then sleep "$gap"; fi
  done | median
}

# anon_kb PID: the process's anonymous resident memory (RssAnon), which
# leaves out file-backed pages: the binary's code and data first touched
# when the first client connects, a fixed cost that the RSS delta would
# otherwise spread over the clients.
anon_kb() { awk '/^RssAnon:/ {print $2}' "/proc/$1/status"; }


BIN=$OUT/$PROG
mkdir -p "$BIN"
echo "building into $BIN ..."
go build -o "$BIN/mqtthost" ./bench/cmd/mqtthost
go build -o "$BIN/mqttidle" ./bench/cmd/mqttidle
LOGDIR=$OUT/logs/mqtt-idle-$(date +%Y%m%d-%H%M%S)
mkdir -p "$LOGDIR"
RESULTS=$LOGDIR/results.tsv
printf 'server\trun\tbase_kb\tloaded_kb\topened\tbytes_per_client\tgo_heap_stack_per_client\tanon_bytes_per_client\tstep_kb\tstep_opened\tmarginal_bytes_per_client\tmarginal_anon_bytes_per_client\n' >"$RESULTS"

start_broker() { # start_broker NAME LOG: sets SRV_PID and SRV_ADDR
  local name=$1 log=$2 port i
  : >"$log"
  case $name in
    warren)
      GOGC=$BROKER_GOGC "$BIN/mqtthost" -addr 127.0.0.1:0 -memtrim-burst "${MEMTRIM:--1}" "${startgc[@]}" >"$log" 2>&1 &
      SRV_PID=$!
      PIDS+=("$SRV_PID")
      for ((i = 0; i < 100; i++)); do
        SRV_ADDR=$(awk '/^listening / {print $2}' "$log")
        if [ -n "$SRV_ADDR" ]; then
          echo "  $name: $(awk '/^listening / {print ($3 != "" ? $3 : "gogc not printed (mqtthost older than §79): runtime GOGC=" g)}' g="$BROKER_GOGC" "$log")"
          return 0
        fi
        sleep 0.1
      done
      die "mqtthost did not start" ;;
    mosquitto)
      port=$(free_port)
      printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\npersistence false\n' "$port" >"$LOGDIR/mosquitto.conf"
      mosquitto -c "$LOGDIR/mosquitto.conf" >"$log" 2>&1 &
      SRV_PID=$!
      PIDS+=("$SRV_PID")
      SRV_ADDR=127.0.0.1:$port
      for ((i = 0; i < 100; i++)); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1).close()" 2>/dev/null && return 0
        kill -0 "$SRV_PID" 2>/dev/null || { cat "$log" >&2; die "mosquitto exited"; }
        sleep 0.1
      done
      die "mosquitto did not start" ;;
    *) die "unknown server $name" ;;
  esac
}

# open_clients CLOG FIRST COUNT: starts a client process holding COUNT
# clients numbered from FIRST, waits for its READY; sets CPID and READY.
open_clients() {
  local clog=$1 first=$2 count=$3 i v5flag=
  [ "$V5" = 1 ] && v5flag=-v5
  "$BIN/mqttidle" -addr "$SRV_ADDR" -first "$first" -n "$count" $v5flag "${shape[@]}" -concurrency "$CONC" -hold 600s \
    -open-timeout "${OPEN_TIMEOUT}s" >"$clog" 2>&1 &
  CPID=$!
  PIDS+=("$CPID")
  READY=
  for ((i = 0; i < (OPEN_TIMEOUT + 15) * 10; i++)); do
    READY=$(awk '/^READY / {print $2}' "$clog" || true)
    [ -n "$READY" ] && break
    kill -0 "$CPID" 2>/dev/null || { cat "$clog" >&2; die "client exited before READY"; }
    sleep 0.1
  done
  [ -n "$READY" ] && [ "$READY" -gt 0 ] || die "no client ready ($clog)"
}

measure() { # measure SERVER RUN
  local name=$1 run=$2 log clog base loaded abase aloaded ready= cpid i v5flag=
  log=$LOGDIR/$name-$run.log
  clog=$LOGDIR/$name-$run-client.log
  start_broker "$name" "$log"
  sleep 1
  [ "$V5" = 1 ] && v5flag=-v5
  if [ "$WARM" = 1 ]; then
    # A first ramp, held and closed before the baseline (WARM above).
    "$BIN/mqttidle" -addr "$SRV_ADDR" -n "$N" $v5flag "${shape[@]}" -concurrency "$CONC" -hold "${WARM_HOLD}s" \
      -open-timeout "${OPEN_TIMEOUT}s" >"$LOGDIR/$name-$run-warm.log" 2>&1 || { cat "$LOGDIR/$name-$run-warm.log" >&2; die "$name: the warm-up ramp failed"; }
    sleep "$SETTLE"
  fi
  base=$(sample_rss "$SRV_PID" 3 1)
  abase=$(anon_kb "$SRV_PID")
  local ms0="- -" ms1="- -" goper=-
  if [ "$name" = warren ]; then ms0=$(memstats "$SRV_PID" "$log"); fi
  local step=- astep=- sready=0 cpid2= mpc=- mapc=-
  if [ "$STEP" -gt 0 ]; then
    # Two stages (STEP above): STEP clients, RSS, then the rest.
    open_clients "$clog.step" 0 "$STEP"
    cpid2=$CPID sready=$READY
    grep '^{' "$clog.step" | sed "s/^/  $name run $run (first $STEP): /"
    sleep "$SETTLE"
    step=$(sample_rss "$SRV_PID" "$SAMPLES" "$SPAN")
    astep=$(anon_kb "$SRV_PID")
    open_clients "$clog" "$STEP" $((N - STEP))
  else
    open_clients "$clog" 0 "$N"
  fi
  cpid=$CPID
  ready=$((READY + sready))
  grep '^{' "$clog" | sed "s/^/  $name run $run: /"
  sleep "$SETTLE"
  loaded=$(sample_rss "$SRV_PID" "$SAMPLES" "$SPAN")
  aloaded=$(anon_kb "$SRV_PID")
  if [ "$STEP" -gt 0 ]; then
    mpc=$(awk -v l="$loaded" -v b="$step" -v n="$READY" 'BEGIN {printf "%.0f", (l - b) * 1024 / n}')
    mapc=$(awk -v l="$aloaded" -v b="$astep" -v n="$READY" 'BEGIN {printf "%.0f", (l - b) * 1024 / n}')
  fi
  if [ "$name" = warren ]; then ms1=$(memstats "$SRV_PID" "$log"); fi
  if [ "$ms0" != "- -" ] && [ "$ms1" != "- -" ]; then
    goper=$(echo "$ms0 $ms1" | awk -v n="$ready" '{printf "%.0f", (($3 + $4) - ($1 + $2)) / n}')
  fi
  stop_pid "$cpid" 30
  if [ -n "$cpid2" ]; then stop_pid "$cpid2" 30; fi
  stop_pid "$SRV_PID" 30
  PIDS=()
  local bpc apc
  bpc=$(awk -v l="$loaded" -v b="$base" -v n="$ready" 'BEGIN {printf "%.0f", (l - b) * 1024 / n}')
  apc=$(awk -v l="$aloaded" -v b="$abase" -v n="$ready" 'BEGIN {printf "%.0f", (l - b) * 1024 / n}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$run" "$base" "$loaded" "$ready" "$bpc" "$goper" "$apc" \
    "$step" "$sready" "$mpc" "$mapc" >>"$RESULTS"
  printf '  %-10s run %d: baseline %6d kB  loaded %7d kB  clients %6d  => %6d B/client  (anonymous %s B/client, Go heap+stacks %s B/client)\n' \
    "$name" "$run" "$base" "$loaded" "$ready" "$bpc" "$apc" "$goper"
  if [ "$STEP" -gt 0 ]; then
    printf '  %-10s run %d: at %d clients %7d kB  => marginal %s B/client over the last %d  (anonymous %s B/client)\n' \
      "$name" "$run" "$sready" "$step" "$mpc" "$READY" "$mapc"
  fi
}

read -r -a order <<<"$SERVERS"
echo "mqtt-idle: N=$N RUNS=$RUNS SERVERS=\"$SERVERS\" V5=$V5 DEVICES=$DEVICES WILL=$WILL WARM=$WARM STEP=$STEP START_GC=$START_GC MEMTRIM=${MEMTRIM:-off} GOGC=$BROKER_GOGC GOMEMLIMIT=${GOMEMLIMIT:-default} mosquitto $(mosquitto -h 2>/dev/null | awk 'NR == 1 {print $3}')"
echo "  $(machine_line)"
echo "  at $(git rev-parse --short HEAD 2>/dev/null || echo unknown); logs in $LOGDIR"
for ((run = 1; run <= RUNS; run++)); do
  for ((j = 0; j < ${#order[@]}; j++)); do
    measure "${order[$(((j + run - 1) % ${#order[@]}))]}" "$run"
  done
done
echo
echo "medians over $RUNS run(s), N=$N:"
for s in $SERVERS; do
  m=$(awk -F'\t' -v s="$s" 'NR > 1 && $1 == s {print $6}' "$RESULTS" | median)
  a=$(awk -F'\t' -v s="$s" 'NR > 1 && $1 == s {print $8}' "$RESULTS" | median)
  printf '  %-10s %8s B/client  (anonymous RSS %s B/client)\n' "$s" "$m" "$a"
done
if [[ " $SERVERS " == *" warren "* ]]; then
  g=$(awk -F'\t' 'NR > 1 && $1 == "warren" && $7 != "-" {print $7}' "$RESULTS" | median)
  printf '  warren live Go heap+stacks %s B/client\n' "$g"
fi
if [[ " $SERVERS " == *" warren "* && " $SERVERS " == *" mosquitto "* ]]; then
  w=$(awk -F'\t' 'NR > 1 && $1 == "warren" {print $6}' "$RESULTS" | median)
  m=$(awk -F'\t' 'NR > 1 && $1 == "mosquitto" {print $6}' "$RESULTS" | median)
  if [ "$WARM" = 1 ]; then
    awk -v w="$w" -v m="$m" 'BEGIN {printf "  warren / mosquitto = %.3f (WARM: what the second ramp reused, not the target'"'"'s figure)\n", w / m}'
  else
    awk -v w="$w" -v m="$m" 'BEGIN {printf "  warren / mosquitto = %.3f (target <= 0.5)\n", w / m}'
  fi
  w=$(awk -F'\t' 'NR > 1 && $1 == "warren" {print $8}' "$RESULTS" | median)
  m=$(awk -F'\t' 'NR > 1 && $1 == "mosquitto" {print $8}' "$RESULTS" | median)
  awk -v w="$w" -v m="$m" 'BEGIN {printf "  anonymous RSS only: warren / mosquitto = %.3f\n", w / m}'
fi
if [ "$STEP" -gt 0 ]; then
  echo "marginal, clients $STEP..$N (free of fixed costs):"
  for s in $SERVERS; do
    m=$(awk -F'\t' -v s="$s" 'NR > 1 && $1 == s {print $11}' "$RESULTS" | median)
    a=$(awk -F'\t' -v s="$s" 'NR > 1 && $1 == s {print $12}' "$RESULTS" | median)
    printf '  %-10s %8s B/client  (anonymous RSS %s B/client)\n' "$s" "$m" "$a"
  done
  if [[ " $SERVERS " == *" warren "* && " $SERVERS " == *" mosquitto "* ]]; then
    w=$(awk -F'\t' 'NR > 1 && $1 == "warren" {print $11}' "$RESULTS" | median)
    m=$(awk -F'\t' 'NR > 1 && $1 == "mosquitto" {print $11}' "$RESULTS" | median)
    awk -v w="$w" -v m="$m" 'BEGIN {printf "  marginal: warren / mosquitto = %.3f\n", w / m}'
  fi
fi
echo "per-run figures: $RESULTS"
