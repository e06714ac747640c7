#!/usr/bin/env bash
# bench/proxy-threads.sh BIN [PROXY_FLAGS...] — where `warren proxy`'s
# threads spend their switches under load: per thread, voluntary and
# involuntary context switches a second and CPU ticks (/proc/PID/task/*),
# over $SPAN seconds of a wrk run, busiest first, with the requests a second.
# The Go runtime's sysmon is the thread with many voluntary switches and
# little CPU: thousands a second mean it polls at its 20 µs floor (retaking
# Ps, preempting goroutines). With PROBES=1 (root, perf) it also counts
# the runtime's retake, preemptone, handoffp and gosched_m calls in the
# proxy through uprobes (docs/benchmarks.md §97).
#
#   flock /tmp/warren-bench.lock bench/proxy-threads.sh /tmp/warren -io-uring
#   PROBES=1 flock /tmp/warren-bench.lock bench/proxy-threads.sh /tmp/warren
#
# Setup as bench/proxy.sh's: `warren echo -loops 1` behind `warren proxy
# -loops 2 -max-idle-per-host 256`, wrk -t2 -c$CONNS, a 2 s warm-up.
# Environment: SPAN (5), CONNS (64), PROBES.
set -euo pipefail
PROG=proxy-threads.sh
[ $# -ge 1 ] || { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
W=$(realpath "$1") # before the cd: a relative BIN is the caller's
shift
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
need_cmd wrk
export LC_ALL=C # sort and join agree on the order
SPAN=${SPAN:-5}
CONNS=${CONNS:-64}
OUT_WRK=$(mktemp)
OUT_PERF=$(mktemp)
trap 'rm -f "$OUT_WRK" "$OUT_PERF"; cleanup' EXIT

BPORT=$(free_port)
"$W" echo -addr "127.0.0.1:$BPORT" -admin "" -loops 1 >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$BPORT"
PPORT=$(free_port)
"$W" proxy -listen "127.0.0.1:$PPORT" -admin "" -loops 2 \
  -upstream "http://127.0.0.1:$BPORT" -max-idle-per-host 256 "$@" >/dev/null 2>&1 &
P=$!
PIDS+=("$P")
wait_port "$PPORT"

EVENTS=()
if [ "${PROBES:-}" = 1 ]; then
  need_cmd perf:linux-perf
  GROUP=warrenrt
  trap 'perf probe -q -d "$GROUP:*" >/dev/null 2>&1 || true; rm -f "$OUT_WRK" "$OUT_PERF"; cleanup' EXIT
  perf probe -q -d "$GROUP:*" >/dev/null 2>&1 || true
  for f in retake preemptone handoffp gosched_m; do
    if perf probe -q -x "$W" -a "$GROUP:w_$f=runtime.$f" >/dev/null 2>&1; then
      EVENTS+=(-e "$GROUP:w_$f")
    fi
  done
  [ ${#EVENTS[@]} -gt 0 ] || die "PROBES=1: no uprobe could be added to $W (root? symbols? uprobes?)"
fi

# snap: "tid voluntary involuntary ticks" per thread of the proxy.
snap() {
  local t
  for t in /proc/"$P"/task/*; do
    echo "$(basename "$t") $(awk '/^voluntary_ctxt/ {v = $2} /^nonvoluntary_ctxt/ {n = $2} END {print v, n}' "$t/status") $(awk '{print $14 + $15}' "$t/stat")"
  done | sort
}

wrk -t2 -c"$CONNS" -d2s "http://127.0.0.1:$PPORT/" >/dev/null
wrk -t2 -c"$CONNS" -d$((SPAN + 2))s "http://127.0.0.1:$PPORT/" >"$OUT_WRK" 2>&1 &
WRK=$!
PIDS+=("$WRK")
sleep 1
s1=$(snap)
if [ ${#EVENTS[@]} -gt 0 ]; then
  perf stat -x, "${EVENTS[@]}" -p "$P" -- sleep "$SPAN" 2>"$OUT_PERF" >/dev/null ||
    die "perf stat failed: $(cat "$OUT_PERF")"
else
  sleep "$SPAN"
fi
s2=$(snap)
wait "$WRK"
echo "# $(basename "$W") proxy $*: $(awk '/^Requests\/sec/ {print $2}' "$OUT_WRK") requests/s over the whole wrk run ($((SPAN + 2)) s; the rates below over its middle $SPAN s); $(machine_line)"
printf '%-8s %10s %12s %10s\n' tid "vol/s" "invol/s" "cpu ms/s"
join <(echo "$s1") <(echo "$s2") | awk -v s="$SPAN" -v hz="$(getconf CLK_TCK)" \
  '{printf "%-8s %10.0f %12.0f %10.1f\n", $1, ($5 - $2) / s, ($6 - $3) / s, ($7 - $4) / hz * 1000 / s}' |
  sort -k4 -n -r
if [ ${#EVENTS[@]} -gt 0 ]; then
  awk -F, -v s="$SPAN" '$3 ~ /w_/ {sub(/.*:w_/, "", $3); printf "runtime.%s: %.0f/s\n", $3, $1 / s}' "$OUT_PERF"
fi
