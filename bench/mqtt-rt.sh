#!/usr/bin/env bash
# mqtt-rt.sh — broker CPU per message of an MQTT round trip, warren's
# broker (bench/cmd/mqtthost) against Debian's mosquitto 2.x in the same
# run: N clients each subscribed to a topic of its own publish to it at
# RATE messages per second in total (bench/cmd/mqttrt), at QoS 0 and QoS 1.
#
#   bench/mqtt-rt.sh                          5,000 clients, 20,000 msg/s, QoS 0 and 1, 1 run
#   N=1000 RATE=5000 DURATION=10 bench/mqtt-rt.sh
#
# For every QoS, run and server it starts the broker on a free loopback
# port, runs mqttrt with -server-pid (WARMUP seconds, then DURATION
# seconds measured), and reports the broker's CPU time (utime + stime from
# /proc) per message received by the clients, the messages per second and
# the latency quantiles. Medians over RUNS and the ratios close the report.
#
# Environment: N (5000), RATE (20000), QOS ("0 1"), RUNS (1), SERVERS
# ("warren mosquitto"; "warrenB" is warren's broker again with B_ENV, e.g.
# B_ENV=GOGC=50, for an A/B of a setting in the same rounds;
# with B_BIN=PATH it runs that mqtthost binary instead, e.g. main's),
# WARMUP (3), DURATION (15), SIZE (64), LOOPS (0: GOMAXPROCS, warren's event
# loops), OUT (bench/out). Linux only. mqtthost runs with warren serve's
# collector target (-gogc 25) unless GOGC is set (docs/benchmarks.md §79).
# The script gives GOGC (25 unless set) to every broker it starts, so
# both sides of an A/B run with the same target: an mqtthost older than
# §79, which has no -gogc flag, gets it through the runtime's own GOGC
# (before §79 every run that did not set GOGC measured at 100). B_ENV
# may still set another for warrenB. Each broker's listening line names
# the target in effect (gogc=N; an older mqtthost prints none), and the
# report shows it.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-5000}
RATE=${RATE:-20000}
QOS=${QOS:-"0 1"}
RUNS=${RUNS:-1}
SERVERS=${SERVERS:-"warren mosquitto"}
WARMUP=${WARMUP:-3}
DURATION=${DURATION:-15}
SIZE=${SIZE:-64}
LOOPS=${LOOPS:-0}
B_ENV=${B_ENV:-}
B_BIN=${B_BIN:-}
BROKER_GOGC=${GOGC:-25} # every broker's, both sides of an A/B alike (above)
OUT=${OUT:-bench/out}

PROG=mqtt-rt
# shellcheck source=bench/lib.sh
. bench/lib.sh
[ -r /proc/self/status ] || die "needs Linux /proc"
ulimit -n "$(ulimit -Hn)"
# Debian's mosquitto is installed (apt-get) when a run wants it and it is missing.
if [[ " $SERVERS " == *" mosquitto "* ]] && ! command -v mosquitto >/dev/null; then
  echo "installing mosquitto (apt-get) ..."
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto; } >/dev/null 2>&1 ||
    die "mosquitto is missing and apt-get install mosquitto failed"
  command -v mosquitto >/dev/null || die "mosquitto not installed (apt-get install mosquitto)"
fi

BIN=$OUT/$PROG
mkdir -p "$BIN"
echo "building into $BIN ..."
go build -o "$BIN/mqtthost" ./bench/cmd/mqtthost
go build -o "$BIN/mqttrt" ./bench/cmd/mqttrt
LOGDIR=$OUT/logs/mqtt-rt-$(date +%Y%m%d-%H%M%S)
mkdir -p "$LOGDIR"
RESULTS=$LOGDIR/results.tsv
printf 'server\tqos\trun\treceived\tmsg_per_s\tcpu_us_per_msg\tp50_ms\tp99_ms\n' >"$RESULTS"

start_broker() { # start_broker NAME LOG: sets SRV_PID and SRV_ADDR
  local name=$1 log=$2 port i
  : >"$log"
  case $name in
    warren | warrenB)
      if [ "$name" = warrenB ]; then
        # shellcheck disable=SC2086 # B_ENV is a list of NAME=VALUE words
        env GOGC="$BROKER_GOGC" $B_ENV "${B_BIN:-$BIN/mqtthost}" -addr 127.0.0.1:0 -loops "$LOOPS" >"$log" 2>&1 &
      else
        GOGC=$BROKER_GOGC "$BIN/mqtthost" -addr 127.0.0.1:0 -loops "$LOOPS" >"$log" 2>&1 &
      fi
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
      printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\npersistence false\nmax_inflight_messages 64\nmax_queued_messages 1000\n' "$port" >"$LOGDIR/mosquitto.conf"
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

measure() { # measure SERVER QOS RUN
  local name=$1 qos=$2 run=$3 log clog line
  log=$LOGDIR/$name-q$qos-$run.log
  clog=$LOGDIR/$name-q$qos-$run-client.log
  start_broker "$name" "$log"
  sleep 1
  timeout $((WARMUP + DURATION + 120)) "$BIN/mqttrt" -addr "$SRV_ADDR" -n "$N" -qos "$qos" -rate "$RATE" -size "$SIZE" \
    -warmup "${WARMUP}s" -duration "${DURATION}s" -server-pid "$SRV_PID" >"$clog" 2>&1 || true
  stop_pid "$SRV_PID" 30
  PIDS=()
  line=$(grep '^{' "$clog" | tail -n 1)
  [ -n "$line" ] || { cat "$clog" >&2; die "$name qos $qos: no result"; }
  echo "  $name qos $qos run $run: $line"
  echo "$line" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("\t".join(str(x) for x in [sys.argv[1], sys.argv[2], sys.argv[3], r["received"], round(r["received"] / r["seconds"]),
      round(r.get("server_cpu_us_per_msg", 0), 2), round(r["p50_ms"], 3), round(r["p99_ms"], 3)]))' "$name" "$qos" "$run" >>"$RESULTS"
}

read -r -a order <<<"$SERVERS"
echo "mqtt-rt: N=$N RATE=$RATE QOS=\"$QOS\" RUNS=$RUNS DURATION=${DURATION}s SIZE=$SIZE GOGC=$BROKER_GOGC${B_ENV:+ B_ENV=\"$B_ENV\"}${B_BIN:+ B_BIN=$B_BIN} mosquitto $(mosquitto -h 2>/dev/null | awk 'NR == 1 {print $3}')"
echo "  $(machine_line)"
echo "  at $(git rev-parse --short HEAD 2>/dev/null || echo unknown); logs in $LOGDIR"
for qos in $QOS; do
  for ((run = 1; run <= RUNS; run++)); do
    for ((j = 0; j < ${#order[@]}; j++)); do
      measure "${order[$(((j + run - 1) % ${#order[@]}))]}" "$qos" "$run"
    done
  done
done
echo
echo "medians over $RUNS run(s):"
printf '  %-10s %4s %10s %14s %9s %9s\n' server qos msg/s cpu_us/msg p50_ms p99_ms
for qos in $QOS; do
  for s in $SERVERS; do
    col() { awk -F'\t' -v s="$s" -v q="$qos" -v c="$1" 'NR > 1 && $1 == s && $2 == q {print $c}' "$RESULTS" | median; }
    printf '  %-10s %4s %10s %14s %9s %9s\n' "$s" "$qos" "$(col 5)" "$(col 6)" "$(col 7)" "$(col 8)"
  done
  if [[ " $SERVERS " == *" warren "* && " $SERVERS " == *" mosquitto "* ]]; then
    w=$(awk -F'\t' -v q="$qos" 'NR > 1 && $1 == "warren" && $2 == q {print $6}' "$RESULTS" | median)
    m=$(awk -F'\t' -v q="$qos" 'NR > 1 && $1 == "mosquitto" && $2 == q {print $6}' "$RESULTS" | median)
    awk -v w="$w" -v m="$m" -v q="$qos" 'BEGIN {if (m > 0) printf "  QoS %s: warren / mosquitto CPU per message = %.3f (target <= 0.8)\n", q, w / m}'
    if [[ " $SERVERS " == *" warrenB "* ]]; then
      b=$(awk -F'\t' -v q="$qos" 'NR > 1 && $1 == "warrenB" && $2 == q {print $6}' "$RESULTS" | median)
      awk -v b="$b" -v w="$w" -v m="$m" -v q="$qos" -v e="$B_ENV" 'BEGIN {if (m > 0 && w > 0) printf "  QoS %s: warrenB (%s) / mosquitto = %.3f; warrenB / warren = %.3f\n", q, e, b / m, b / w}'
    fi
  fi
done
echo "per-run figures: $RESULTS"
