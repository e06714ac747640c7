#!/usr/bin/env bash
# idle-mem.sh — server memory per idle TCP connection, warren against Go's
# goroutine-per-connection net package in the same run.
#
#   bench/idle-mem.sh                      15,000 connections, 3 runs, warren and netecho
#   N=5000 RUNS=1 bench/idle-mem.sh        smaller and quicker
#   SERVERS="warren netecho portable enginehost" bench/idle-mem.sh
#
# For every run and server it starts the server on a free loopback port,
# takes its baseline RSS (VmRSS from /proc/PID/status, median of 3 samples
# over a second), opens N connections with bench/cmd/idleclient (each sends
# "hi\n" once and reads the echo, then stays idle), waits for READY, lets the
# server settle for SETTLE seconds, takes the median of SAMPLES RSS samples
# over SPAN seconds, and reports (RSS_loaded - RSS_baseline) / connections
# opened. Medians over RUNS runs and the ratios against netecho close the
# report. Server order rotates between runs.
#
# Next to that figure it reports the anonymous part alone (RssAnon: heap,
# stacks, runtime metadata) per connection, and the file-backed kB the
# server paged in meanwhile (RssFile: pages of its own binary). The file
# part is a one-off, not a per-connection cost: the Go runtime's first GC
# cycle, which starts at about 15,000 idle connections (the heap passes
# its first 4 MB goal), reads the binary's .gopclntab for its stack scans
# and the kernel maps those pages 64 KiB around each fault; which and how
# many 64 KiB windows depends on the binary's layout (192 against 320 kB
# between two commits with the same heap per connection, §95 of
# docs/benchmarks.md). Compare builds on the anonymous figure when they
# differ by a few bytes.
#
# Servers:
#   warren      warren echo -proto tcp (event loops, handler inline; admin
#               listener on a free port, as shipped)
#   warren-noadmin  the same with -admin "" (no admin listener)
#   portable    warren echo -proto tcp -portable (engine on Go's net package)
#   netecho     bench/cmd/netecho: goroutine per connection, 4 KiB buffer each
#   enginehost  bench/cmd/enginehost: the engine in-process; also reports
#               Go heap figures (like netecho, on SIGUSR1)
#
# Environment: N (15000), RUNS (3), SERVERS ("warren netecho"), PER_CLIENT
# (connections per client process, at most 19000 under a 20,000 descriptor
# limit; default 15000), CONC (dials in flight per client, 200), SETTLE (2 s),
# SAMPLES (7), SPAN (3 s), OPEN_TIMEOUT (120 s), OUT (bench/out). GOGC and
# GOMEMLIMIT, when set, apply to every server alike and are printed.
#
# Linux only (it reads /proc). Every wait is bounded; every process it
# starts is stopped by pid on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-15000}
RUNS=${RUNS:-3}
SERVERS=${SERVERS:-"warren netecho"}
PER_CLIENT=${PER_CLIENT:-15000}
CONC=${CONC:-200}
SETTLE=${SETTLE:-2}
SAMPLES=${SAMPLES:-7}
SPAN=${SPAN:-3}
OPEN_TIMEOUT=${OPEN_TIMEOUT:-120}
OUT=${OUT:-bench/out}

PROG=idle-mem
# shellcheck source=bench/lib.sh
. bench/lib.sh
[ -r /proc/self/status ] || die "needs Linux /proc"
[ "$PER_CLIENT" -le 19000 ] || die "PER_CLIENT=$PER_CLIENT: one process cannot hold more than ~19000 connections"
for s in $SERVERS; do check_server "$s"; done
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ $((N + 100)) -gt "$hard" ]; then
  die "N=$N: the server cannot hold more than about $((hard - 100)) connections under the open-file hard limit $hard"
fi

# sample_rss PID COUNT SPAN: "VMRSS ANON", the medians in kB of VmRSS and
# RssAnon over COUNT samples taken across SPAN seconds.
sample_rss() {
  local pid=$1 count=$2 span=$3 gap i samples
  gap=$(awk -v s="$span" -v c="$count" 'BEGIN {print (c > 1) ? s / (c - 1) : 0}')
  samples=$(for ((i = 0; i < count; i++)); do
    kill -0 "$pid" 2>/dev/null || die "server pid $pid died while sampling"
    awk '/^VmRSS:/ {r = $2} /^RssAnon:/ {a = $2} END {print r, a}' "/proc/$pid/status"
    if [ "$i" -lt $((count - 1)) ]; then sleep "$gap"; fi
  done)
  echo "$(echo "$samples" | cut -d' ' -f1 | median) $(echo "$samples" | cut -d' ' -f2 | median)"
}

# ---- build ---------------------------------------------------------------
# Binaries go to a directory of this script's own, so another benchmark
# rebuilding bench/out/warren at the same time cannot swap them mid-run.
BIN=$OUT/$PROG
mkdir -p "$BIN"
echo "building into $BIN ..."
go build -o "$BIN/warren" ./cmd/warren
for p in idleclient netecho enginehost; do go build -o "$BIN/$p" "./bench/cmd/$p"; done
LOGDIR=$OUT/logs/idle-mem-$(date +%Y%m%d-%H%M%S)
mkdir -p "$LOGDIR"

# ---- one measurement -----------------------------------------------------
RESULTS=$LOGDIR/results.tsv
printf 'server\trun\tbase_kb\tloaded_kb\thwm_kb\topened\tbytes_per_conn\tgo_heap_stack_per_conn\tanon_bytes_per_conn\tfile_kb\n' >"$RESULTS"

measure() { # measure SERVER RUN
  local name=$1 run=$2 log base loaded base_anon loaded_anon hwm opened=0 k clients per n ready i
  local cpids=() clogs=() ms0 ms1 goper="-"
  log=$LOGDIR/$name-$run.log
  start_server "$name" "$log"
  sleep 1
  read -r base base_anon <<<"$(sample_rss "$SRV_PID" 3 1)"
  ms0="- -"
  if has_memstats "$name"; then ms0=$(memstats "$SRV_PID" "$log"); fi

  clients=$(((N + PER_CLIENT - 1) / PER_CLIENT))
  per=$(((N + clients - 1) / clients))
  for ((k = 0; k < clients; k++)); do
    n=$per
    if [ $((k * per + n)) -gt "$N" ]; then n=$((N - k * per)); fi
    clogs+=("$LOGDIR/$name-$run-client$k.log")
    : >"${clogs[$k]}"
    "$BIN/idleclient" -addr "$SRV_ADDR" -n "$n" -src-base "127.0.$((k + 1)).1" -src-count 60 \
      -concurrency "$CONC" -hold 600s -open-timeout "${OPEN_TIMEOUT}s" >"${clogs[$k]}" 2>&1 &
    cpids+=($!)
    PIDS+=($!)
  done
  for ((k = 0; k < clients; k++)); do
    ready=
    for ((i = 0; i < (OPEN_TIMEOUT + 15) * 10; i++)); do
      ready=$(awk '/^READY / {print $2}' "${clogs[$k]}" || true)
      [ -n "$ready" ] && break
      kill -0 "${cpids[$k]}" 2>/dev/null || { cat "${clogs[$k]}" >&2; die "client $k exited before READY"; }
      sleep 0.1
    done
    [ -n "$ready" ] || die "client $k not READY within $((OPEN_TIMEOUT + 15)) s"
    opened=$((opened + ready))
    grep '^{' "${clogs[$k]}" | sed "s/^/  $name run $run client $k: /"
  done
  [ "$opened" -eq "$N" ] || echo "$PROG: warning: $name opened $opened of $N connections; dividing by $opened" >&2
  [ "$opened" -gt 0 ] || die "$name: no connection opened"

  sleep "$SETTLE"
  read -r loaded loaded_anon <<<"$(sample_rss "$SRV_PID" "$SAMPLES" "$SPAN")"
  hwm=$(hwm_kb "$SRV_PID")
  ms1="- -"
  if has_memstats "$name"; then ms1=$(memstats "$SRV_PID" "$log"); fi
  if [ "$ms0" != "- -" ] && [ "$ms1" != "- -" ]; then
    goper=$(echo "$ms0 $ms1" | awk -v n="$opened" '{printf "%.0f", (($3 + $4) - ($1 + $2)) / n}')
  fi

  for k in "${!cpids[@]}"; do stop_pid "${cpids[$k]}" 30; done
  stop_pid "$SRV_PID" 30
  PIDS=()
  local bpc abpc fkb
  bpc=$(awk -v l="$loaded" -v b="$base" -v n="$opened" 'BEGIN {printf "%.0f", (l - b) * 1024 / n}')
  abpc=$(awk -v l="$loaded_anon" -v b="$base_anon" -v n="$opened" 'BEGIN {printf "%.0f", (l - b) * 1024 / n}')
  fkb=$(((loaded - base) - (loaded_anon - base_anon)))
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$run" "$base" "$loaded" "$hwm" "$opened" "$bpc" "$goper" "$abpc" "$fkb" >>"$RESULTS"
  printf '  %-10s run %d: baseline %6d kB  loaded %7d kB  peak %7d kB  opened %6d  => %6d B/conn, anonymous %d B/conn + file %d kB  (Go heap+stacks %s B/conn)\n' \
    "$name" "$run" "$base" "$loaded" "$hwm" "$opened" "$bpc" "$abpc" "$fkb" "$goper"
}

# ---- runs ----------------------------------------------------------------
read -r -a order <<<"$SERVERS"
echo "idle-mem: N=$N RUNS=$RUNS SERVERS=\"$SERVERS\" GOGC=${GOGC:-default} GOMEMLIMIT=${GOMEMLIMIT:-default}"
echo "  $(machine_line)"
echo "  engine at $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- engine internal cmd 2>/dev/null || echo ' (uncommitted changes)'); logs in $LOGDIR"
for ((run = 1; run <= RUNS; run++)); do
  for ((j = 0; j < ${#order[@]}; j++)); do
    measure "${order[$(((j + run - 1) % ${#order[@]}))]}" "$run"
  done
done

# ---- summary -------------------------------------------------------------
echo
echo "medians over $RUNS run(s), N=$N:"
printf '  %-10s %12s %12s %12s %14s %14s %10s %18s\n' server baseline_kB loaded_kB peak_kB bytes/conn anon_B/conn file_kB go_heap+stack/conn
for s in $SERVERS; do
  col() { awk -F'\t' -v s="$s" -v c="$1" 'NR > 1 && $1 == s && $c != "-" {print $c}' "$RESULTS" | median; }
  printf '  %-10s %12s %12s %12s %14s %14s %10s %18s\n' "$s" "$(col 3)" "$(col 4)" "$(col 5)" "$(col 7)" "$(col 9)" "$(col 10)" "$(col 8)"
done
if [[ " $SERVERS " == *" netecho "* ]]; then
  echo
  echo "ratios of medians (bytes per idle connection), against netecho measured in the same run:"
  peer=$(awk -F'\t' 'NR > 1 && $1 == "netecho" {print $7}' "$RESULTS" | median)
  for s in $SERVERS; do
    [ "$s" = netecho ] && continue
    m=$(awk -F'\t' -v s="$s" 'NR > 1 && $1 == s {print $7}' "$RESULTS" | median)
    awk -v s="$s" -v m="$m" -v p="$peer" 'BEGIN {printf "  %-10s / netecho = %.3f  (netecho uses %.1fx the memory)\n", s, m / p, p / m}'
  done
fi
echo
echo "per-run figures: $RESULTS"
