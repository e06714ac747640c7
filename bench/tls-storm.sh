#!/usr/bin/env bash
# tls-storm.sh — issue 13's reconnect-storm target: 20,000 TLS devices
# reconnecting at once against a gateway limited to 2,000 handshakes/s,
# while 1,000 established devices keep their command p99 < 50 ms.
#
#   flock /tmp/warren-bench.lock bench/tls-storm.sh
#   STORM=2000 ESTABLISHED=100 TLS_RATE=500 bench/tls-storm.sh     smaller
#
# Steps, each bounded in time:
#  1. builds warren; makes a throwaway CA and an ECDSA P-256 server
#     certificate for localhost with openssl; starts `warren serve -procs
#     GW_PROCS -tls-addr` (wss devices, token auth over TLS) with
#     -tls-rate TLS_RATE/GW_PROCS: the bound is per listener and per
#     process, and SO_REUSEPORT spreads the connections evenly over the
#     workers, so the gateway as a whole admits TLS_RATE new TLS
#     connections a second. Per-IP rates and flapping bans are off: every
#     device here comes from one of a few loopback addresses, where real
#     devices have one each.
#  2. baseline: ESTABLISHED devices (dev-1 …) connect over wss from one
#     process, then for BASE take COMMANDS commands a second through the
#     management API (and send telemetry, one message per device every
#     5 s); their command round trips are the "before" figure.
#  3. storm: the same ESTABLISHED devices connect again and start the same
#     traffic for WINDOW; as their traffic starts, STORM other devices
#     (dev-<ESTABLISHED+1> …, `warren load -first`) dial at once over wss
#     from LOAD_PROCS processes and SOURCES source addresses (the load
#     generator's 1,024 connects in flight per process). Devices refused
#     by the rate bound retry with jittered exponential backoff
#     (-retries RETRIES -retry-backoff BACKOFF -retry-backoff-max
#     BACKOFF_MAX), as real devices do. The script samples the gateway's
#     merged /metrics every 0.25 s (into OUT/tls-storm-samples.txt: seconds
#     since the storm's start, devices online, handshakes ok, refused by
#     the listener's bound, and the gateway's own command round trips —
#     hub to device to ack — in all, within 50 ms, within 250 ms). Reports the time until all STORM are online (from
#     the storm's start), handshakes/s achieved, refusals by bound, the
#     established devices' command p50/p99 during the storm and before it,
#     commands lost (sent minus answered 200), and the peak RSS (VmHWM) of
#     every gateway process.
#
# Environment: STORM (20000), ESTABLISHED (1000), TLS_RATE (2000, the
# gateway's total), GW_PROCS (2), LOAD_PROCS (2), SOURCES
# (127.0.4.1-127.0.4.16), COMMANDS (200 per second), BASE (15s), WINDOW
# (traffic length of the storm run: 25s), STORM_HOLD (how long the
# storm's devices stay connected once all are online, before they all
# close at once: WINDOW, so that they leave after the established
# devices' traffic has ended however fast the storm went; before
# docs/benchmarks.md §59 it was 5s, and a storm faster than about 19.5 s
# then disconnected its 20,000 devices inside the measured window — a
# different event with its own tail, which STORM_HOLD=1s measures on
# purpose; the script says when they left), GW_GODEBUG (GODEBUG of the
# gateway only, e.g. gctrace=1: its collections into the gateway's log),
# LEAVE_PROFILE (seconds: CPU profiles of the parent and of worker 0 from
# half a second before the storm's devices are due to leave, into OUT;
# STORM_HOLD in seconds, e.g. 1s), RETRIES (100), BACKOFF (1s),
# BACKOFF_MAX (8s), GW_FLAGS (more `warren serve` flags, e.g.
# "-tls-handshake-workers 8"), PROFILE (seconds: a CPU profile of worker 0
# during the storm, into OUT), TRACE (seconds: a runtime execution trace
# of worker 0 during the storm, into OUT; read with `go tool trace
# -pprof=sched`), STORM_NICE (0: the nice value of the storm's
# load generator; on this one machine its client handshakes take the CPU
# that real devices' own processors would spend), WARREN_BIN (a warren
# binary to run as the gateway instead of building this checkout's, for
# A/B runs of binaries built beforehand: nothing is compiled then),
# LOAD_BIN (the warren binary of the load generators; WARREN_BIN or the
# build by default — keep it the same binary across an A/B), OUT
# (bench/out).
# Each worker's stop-the-world pauses are given from its
# go_gc_duration_seconds (the last 256 collections' pauses: after a storm,
# mostly the storm's). Each gateway process's CPU and run-queue wait is also given split by
# thread priority: threads at nice 0 (loops, NATS, handlers) and lowered
# handshake threads (-tls-handshake-nice; threads that end during the
# storm drop out of that sum).
#
# Linux only (it reads /proc). Every process it starts is stopped by pid.
set -euo pipefail
cd "$(dirname "$0")/.."

STORM=${STORM:-20000}
ESTABLISHED=${ESTABLISHED:-1000}
TLS_RATE=${TLS_RATE:-2000}
GW_PROCS=${GW_PROCS:-2}
LOAD_PROCS=${LOAD_PROCS:-2}
SOURCES=${SOURCES:-127.0.4.1-127.0.4.16}
COMMANDS=${COMMANDS:-200}
BASE=${BASE:-15s}
WINDOW=${WINDOW:-25s}
RETRIES=${RETRIES:-100}
BACKOFF=${BACKOFF:-1s}
BACKOFF_MAX=${BACKOFF_MAX:-8s}
GW_FLAGS=${GW_FLAGS:-}
GW_GODEBUG=${GW_GODEBUG:-}
STORM_HOLD=${STORM_HOLD:-$WINDOW}
LEAVE_PROFILE=${LEAVE_PROFILE:-0}
PROFILE=${PROFILE:-0}
TRACE=${TRACE:-0}
STORM_NICE=${STORM_NICE:-0}
WARREN_BIN=${WARREN_BIN:-}
LOAD_BIN=${LOAD_BIN:-}
OUT=${OUT:-bench/out}

PROG=tls-storm
# shellcheck source=bench/lib.sh
. bench/lib.sh
[ -r /proc/self/status ] || die "needs Linux /proc"
command -v openssl >/dev/null || die "needs openssl (to make the certificates)"
total=$((STORM + ESTABLISHED))
per=$(((total + GW_PROCS - 1) / GW_PROCS))
[ "$per" -le 19000 ] || die "$total devices over GW_PROCS=$GW_PROCS is $per a worker: over the open-file limit"
per=$(((STORM + LOAD_PROCS - 1) / LOAD_PROCS))
[ "$per" -le 19000 ] || die "STORM=$STORM over LOAD_PROCS=$LOAD_PROCS is $per devices a process: over the open-file limit"
for b in "$WARREN_BIN" "$LOAD_BIN"; do
  [ -z "$b" ] || [ -x "$b" ] || die "$b: not an executable"
done
if [ -n "$WARREN_BIN" ]; then
  # gw_setup without the build: the binaries were built beforehand.
  ulimit -n "$(ulimit -Hn)"
  mkdir -p "$OUT"
  BIN=$(mktemp -d)
  DATA=$(mktemp -d)
  trap 'cleanup; rm -rf "$BIN" "$DATA"' EXIT
  cp "$WARREN_BIN" "$BIN/warren"
  SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
else
  gw_setup
fi
LOADW=${LOAD_BIN:-$BIN/warren}

# A CA and a server certificate it signs, for localhost and 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=storm CA" \
  -keyout "$DATA/ca-key.pem" -out "$DATA/ca.pem" >/dev/null 2>&1 || die "openssl: CA"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$DATA/key.pem" -out "$DATA/server.csr" >/dev/null 2>&1 || die "openssl: request"
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$DATA/ext.cnf"
openssl x509 -req -in "$DATA/server.csr" -CA "$DATA/ca.pem" -CAkey "$DATA/ca-key.pem" -CAcreateserial -days 2 \
  -extfile "$DATA/ext.cnf" -out "$DATA/cert.pem" >/dev/null 2>&1 || die "openssl: certificate"

DEV=$(free_port)
TLSP=$(free_port)
API=$(free_port)
ADM=$(free_port)
NATSP=$(free_port)
URL="wss://127.0.0.1:$TLSP/v1/connect"
GWLOG=$OUT/tls-storm-gateway.log
: >"$GWLOG"

# shellcheck disable=SC2086
WARREN_JWT_SECRET=$SECRET GODEBUG=$GW_GODEBUG "$BIN/warren" serve -procs "$GW_PROCS" -addr "127.0.0.1:$DEV" -tls-addr "127.0.0.1:$TLSP" \
  -api "127.0.0.1:$API" -admin "127.0.0.1:$ADM" -nats-listen "127.0.0.1:$NATSP" -mqtt "" -data "$DATA" -log-level warn \
  -tls-cert "$DATA/cert.pem" -tls-key "$DATA/key.pem" -tls-rate "$((TLS_RATE / GW_PROCS))" -tls-rate-per-ip -1 \
  -tls-ban-threshold -1 $GW_FLAGS >>"$GWLOG" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
gw_wait_ready "$GWLOG"
sleep 1

# metric NAME [LABEL_REGEX]: the sum of NAME's samples over the workers
# (whose labels match LABEL_REGEX) in the merged /metrics.
metric() {
  curl -fsS "http://127.0.0.1:$ADM/metrics" 2>/dev/null |
    awk -v n="$1" -v l="${2:-}" '$1 ~ "^"n"([{]|$)" && (l == "" || $1 ~ l) {s += $2} END {printf "%d\n", s}'
}
online() { metric warren_gateway_devices_online; }
gw_cpu() {
  local p t=0
  for p in $(gw_pids); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
  echo "$t"
}
# est_load NAME DURATION: the established devices' run, in the background
# (sets LOAD_PID).
est_load() {
  WARREN_JWT_SECRET=$SECRET "$LOADW" load -scenario devices -url "$URL" -ca "$DATA/ca.pem" -conns "$ESTABLISHED" \
    -src 127.0.3.1 -rate 1000 -hold 2s -duration "$2" -rps "$((ESTABLISHED / 5))" -commands "$COMMANDS" \
    -api "http://127.0.0.1:$API" -retries 10 -timeout 10s -quiet -json "$OUT/tls-storm-$1.json" \
    >"$OUT/tls-storm-$1.txt" 2>"$OUT/tls-storm-$1.err" &
  LOAD_PID=$!
  PIDS+=("$LOAD_PID")
}
# wait_online N: waits (60 s at most) until N devices are online.
wait_online() {
  local i
  for ((i = 0; i < 600; i++)); do
    [ "$(online)" -ge "$1" ] && return 0
    sleep 0.1
  done
  die "only $(online) of $1 devices online after 60s"
}
# cmd_line NAME: the command figures of a run's JSON report.
cmd_line() {
  python3 - "$OUT/tls-storm-$1.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))["devices"]
o, l = d["command_outcomes"], d["command_latency"]
lost = d["commands_sent"] - o.get("200", 0)
print(f'{d["commands_sent"]} commands ({d["commands_unsent"]} unsent), outcomes {o}, lost {lost}; '
      f'rtt p50 {l["p50_ms"]:.2f} ms, p90 {l["p90_ms"]:.2f} ms, p99 {l["p99_ms"]:.2f} ms, p99.9 {l["p99_9_ms"]:.2f} ms, max {l["max_ms"]:.2f} ms')
EOF
}

echo "# tls-storm.sh $(date -u +%FT%TZ): STORM=$STORM ESTABLISHED=$ESTABLISHED TLS_RATE=$TLS_RATE (-tls-rate $((TLS_RATE / GW_PROCS)) x $GW_PROCS workers) LOAD_PROCS=$LOAD_PROCS SOURCES=$SOURCES COMMANDS=$COMMANDS BASE=$BASE WINDOW=$WINDOW RETRIES=$RETRIES BACKOFF=$BACKOFF BACKOFF_MAX=$BACKOFF_MAX GW_FLAGS=$GW_FLAGS STORM_NICE=$STORM_NICE STORM_HOLD=$STORM_HOLD${GW_GODEBUG:+ GW_GODEBUG=$GW_GODEBUG}"
echo "# $(machine_line)"
echo "# gateway $(sha256sum <"$BIN/warren" | cut -c1-16)${WARREN_BIN:+ ($WARREN_BIN)}, load generator $(sha256sum <"$LOADW" | cut -c1-16)"

# 2. Baseline.
est_load base "$BASE"
wait "$LOAD_PID" || echo "baseline: warren load exited $?"
echo "before the storm: $(cmd_line base)"
sleep 2

# 3. Storm.
est_load during "$WINDOW"
EST_PID=$LOAD_PID
wait_online "$ESTABLISHED"
sleep 2 # the established run's hold: its traffic starts now
ok0=$(metric warren_tls_handshakes_total 'result="ok"')
cpu0=$(gw_cpu)
declare -A pcpu0 pwait0
# runq_wait PID: nanoseconds the process's threads have waited on the
# kernel's run queues, runnable but not running (schedstat's second field).
runq_wait() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $2} END {printf "%.0f\n", s}'; }
# thread_stats PID: a line per thread of PID: its id, nice value, and the
# nanoseconds it ran and waited runnable (schedstat), so that the threads
# at the normal priority (event loops, NATS, handlers) can be told from the
# lowered handshake threads (-tls-handshake-nice; "idle" for a thread
# under SCHED_IDLE, stat's policy field).
thread_stats() {
  # grep -H: a thread that ends between the glob and the read is skipped.
  grep -H '' /proc/"$1"/task/*/stat /proc/"$1"/task/*/schedstat 2>/dev/null |
    awk '{i = index($0, ":"); file = substr($0, 1, i - 1); line = substr($0, i + 1); n = split(file, q, "/"); t = q[n - 1]}
         file ~ /\/stat$/ {sub(/.*\) /, "", line); split(line, f, " "); nice[t] = (f[39] == 5) ? "idle" : f[17]; next}
         {split(line, f, " "); run[t] = f[1]; wt[t] = f[2]}
         END {for (t in run) if (t in nice) print t, nice[t], run[t], wt[t]}'
}
# thread_split PID FILE: the CPU and run-queue wait since FILE (thread_stats
# at the start) of PID's threads at nice 0 and of its lowered ones (threads
# that ended meanwhile are not counted).
thread_split() {
  thread_stats "$1" | awk -v f="$2" 'BEGIN {while ((getline l < f) > 0) {split(l, a, " "); r0[a[1]] = a[3]; w0[a[1]] = a[4]}}
    {k = ($2 == 0) ? "nice 0" : "lowered"; n[k]++; r[k] += $3 - r0[$1]; w[k] += $4 - w0[$1]}
    END {for (k in n) printf "%s: %d threads ran %.2f s, waited for a core %.2f s;  ", k, n[k], r[k] / 1e9, w[k] / 1e9}'
}
for p in $(gw_pids) "$EST_PID"; do
  pcpu0[$p]=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
  pwait0[$p]=$(runq_wait "$p")
  thread_stats "$p" >"$OUT/tls-storm-threads0-$p.txt"
done
# The workers' admin listeners, and their garbage collections so far.
mapfile -t WADM < <(curl -fsS "http://127.0.0.1:$ADM/workers" | python3 -c 'import json,sys; [print(w["admin"]) for w in json.load(sys.stdin)]')
# gc_pauses ADDR: a worker's go_gc_duration_seconds (the stop-the-world
# pauses of its last 256 collections, each the sum of the cycle's pauses,
# waiting for every running thread to stop included): the count, then the
# p50, p75 and max in ms.
gc_pauses() {
  curl -fsS "http://$1/metrics" 2>/dev/null | awk '
    /^go_gc_duration_seconds_count/ {n = $2}
    /^go_gc_duration_seconds[{]quantile="0.5"[}]/ {p50 = $2 * 1000}
    /^go_gc_duration_seconds[{]quantile="0.75"[}]/ {p75 = $2 * 1000}
    /^go_gc_duration_seconds[{]quantile="1"[}]/ {mx = $2 * 1000}
    END {printf "%d %.2f %.2f %.2f\n", n, p50, p75, mx}'
}
declare -A gcn0
for a in "${WADM[@]}"; do gcn0[$a]=$(gc_pauses "$a" | cut -d' ' -f1); done
t0=$(date +%s.%N)
WARREN_JWT_SECRET=$SECRET nice -n "$STORM_NICE" "$LOADW" load -scenario devices -url "$URL" -ca "$DATA/ca.pem" -conns "$STORM" \
  -first "$ESTABLISHED" -procs "$LOAD_PROCS" -src "$SOURCES" -retries "$RETRIES" -retry-backoff "$BACKOFF" \
  -retry-backoff-max "$BACKOFF_MAX" -hold "$STORM_HOLD" -timeout 10s -quiet -json "$OUT/tls-storm-storm.json" \
  >"$OUT/tls-storm-storm.txt" 2>"$OUT/tls-storm-storm.err" &
STORM_PID=$!
PIDS+=("$STORM_PID")
if [ "$PROFILE" -gt 0 ]; then
  w0=$(curl -fsS "http://127.0.0.1:$ADM/workers" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["admin"])')
  curl -fsS -o "$OUT/tls-storm-worker0.pprof" "http://$w0/debug/pprof/profile?seconds=$PROFILE" &
  PIDS+=("$!")
fi
if [ "$TRACE" -gt 0 ]; then
  w0=$(curl -fsS "http://127.0.0.1:$ADM/workers" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["admin"])')
  curl -fsS -o "$OUT/tls-storm-worker0.trace" "http://$w0/debug/pprof/trace?seconds=$TRACE" &
  PIDS+=("$!")
fi
all=
peak_online=0
: >"$OUT/tls-storm-samples.txt"
for ((i = 0; i < 2400; i++)); do
  # One scrape a sample, so its figures are of one moment.
  line=$(curl -fsS "http://127.0.0.1:$ADM/metrics" 2>/dev/null | awk -v t="$(echo "$(date +%s.%N) - $t0" | bc)" '
    $1 ~ /^warren_gateway_devices_online([{]|$)/ {on += $2}
    $1 ~ /^warren_tls_handshakes_total[{]/ && $1 ~ /result="ok"/ {ok += $2}
    $1 ~ /^warren_tls_refused_total[{]/ && $1 ~ /bound="listener"/ {ref += $2}
    $1 ~ /^warren_gateway_command_duration_seconds_count([{]|$)/ {cn += $2}
    $1 ~ /^warren_gateway_command_duration_seconds_bucket[{]/ && $1 ~ /le="0.05"/ {c50 += $2}
    $1 ~ /^warren_gateway_command_duration_seconds_bucket[{]/ && $1 ~ /le="0.25"/ {c250 += $2}
    END {printf "%s %d %d %d %d %d %d\n", t, on, ok, ref, cn, c50, c250}')
  echo "$line" >>"$OUT/tls-storm-samples.txt"
  n=$(echo "$line" | awk '{print $2}')
  [ "$n" -gt "$peak_online" ] && peak_online=$n
  if [ "$n" -ge "$total" ]; then
    all=$(echo "$(date +%s.%N) - $t0" | bc)
    break
  fi
  kill -0 "$STORM_PID" 2>/dev/null || break
  sleep 0.25
done
ok1=$(metric warren_tls_handshakes_total 'result="ok"')
cpu1=$(gw_cpu)
hz=$(getconf CLK_TCK)
echo "storm: $(online) of $total online (peak $peak_online); all online ${all:-never} s after the storm's start"
if [ -n "$all" ]; then
  echo "storm: $((ok1 - ok0)) handshakes ok in $all s = $(echo "($ok1 - $ok0) / $all" | bc) handshakes/s (gateway limit $TLS_RATE/s); gateway CPU $(echo "scale=2; ($cpu1 - $cpu0) / $hz" | bc) s = $(echo "scale=2; ($cpu1 - $cpu0) / $hz / $all" | bc) cores"
fi
for b in listener per_ip banned queue_full; do
  echo "refused by bound $b: $(metric warren_tls_refused_total "bound=\"$b\"")"
done
echo "handshakes by result: $(curl -fsS "http://127.0.0.1:$ADM/metrics" | awk '/^warren_tls_handshakes_total/ {split($1, a, "result=\""); split(a[2], r, "\""); s[r[1]] += $2} END {for (k in s) printf "%s %d  ", k, s[k]}')"
for p in $(gw_pids); do
  role=worker
  [ "$p" = "$GW_PID" ] && role="parent (NATS, directory)"
  echo "  pid $p ($role): peak RSS $(hwm_kb "$p") kB, RSS now $(rss_kb "$p") kB, CPU during the storm $(echo "scale=2; ($(awk '{print $14 + $15}' "/proc/$p/stat") - ${pcpu0[$p]:-0}) / $hz" | bc) s," \
    "its threads runnable but waiting for a core $(echo "scale=2; ($(runq_wait "$p") - ${pwait0[$p]:-0}) / 1000000000" | bc) s"
  echo "    by priority: $(thread_split "$p" "$OUT/tls-storm-threads0-$p.txt")"
done
for a in "${WADM[@]}"; do
  read -r n p50 p75 mx < <(gc_pauses "$a")
  echo "  worker $a: $((n - ${gcn0[$a]:-0})) collections during the storm; stop-the-world pause per collection (its last 256) p50 $p50 ms, p75 $p75 ms, max $mx ms"
done
if [ -d "/proc/$EST_PID" ]; then
  echo "  established devices' load generator: its threads runnable but waiting for a core $(echo "scale=2; ($(runq_wait "$EST_PID") - ${pwait0[$EST_PID]:-0}) / 1000000000" | bc) s during the storm"
fi
# 4. Until the established devices' run ends: when the storm's devices
# leave (STORM_HOLD after their ramp: 20,000 disconnects in about a
# second) against the end of the established devices' traffic. Leaving
# inside that window puts the disconnects in the command figures.
left= left_n= est_end= prof_at=
if [ "$LEAVE_PROFILE" -gt 0 ] && [ -n "$all" ] && [[ $STORM_HOLD =~ ^[0-9.]+s$ ]]; then
  prof_at=$(echo "$all + ${STORM_HOLD%s} - 0.5" | bc)
fi
: >"$OUT/tls-storm-after.txt"
for ((i = 0; i < 400; i++)); do
  t=$(echo "$(date +%s.%N) - $t0" | bc)
  if [ -n "$prof_at" ] && [ "$(echo "$t >= $prof_at" | bc)" = 1 ]; then
    prof_at=
    curl -fsS -o "$OUT/tls-storm-leave-parent.pprof" "http://127.0.0.1:$ADM/debug/pprof/profile?seconds=$LEAVE_PROFILE" &
    PIDS+=("$!")
    curl -fsS -o "$OUT/tls-storm-leave-worker0.pprof" "http://${WADM[0]}/debug/pprof/profile?seconds=$LEAVE_PROFILE" &
    PIDS+=("$!")
  fi
  n=$(online)
  # the machine's CPU jiffies so far (user nice system idle iowait irq softirq):
  # the kernel's share of a departure (its TCP teardowns) is in system and softirq
  echo "$t $n $(awk '/^cpu / {print $2, $3, $4, $5, $6, $7, $8; exit}' /proc/stat)" >>"$OUT/tls-storm-after.txt"
  if [ -z "$left" ] && [ -n "$all" ] && [ "$n" -lt $((total - ESTABLISHED)) ]; then left=$t left_n=$n; fi
  if ! kill -0 "$EST_PID" 2>/dev/null; then
    est_end=$t
    break
  fi
  sleep 0.25
done
gone="had not left"
[ -z "$left" ] || gone="began leaving by $left s after the storm's start ($left_n online)"
echo "after the storm: the storm's devices $gone; the established devices' run ended ${est_end:-?} s after it"
wait "$STORM_PID" || echo "storm: warren load exited $?"
grep -E "^(connections|ramp|retries|errors)" "$OUT/tls-storm-storm.txt" || head -n 12 "$OUT/tls-storm-storm.txt"
wait "$EST_PID" || echo "established: warren load exited $?"
echo "during the storm: $(cmd_line during)"
grep -E "^(connections|traffic)" "$OUT/tls-storm-during.txt" || true
