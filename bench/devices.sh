#!/usr/bin/env bash
# devices.sh — warren serve's device targets: held devices and server RSS
# per device, telemetry end to end through NATS, commands through the
# management API, and a reconnect storm.
#
#   flock /tmp/warren-bench.lock bench/devices.sh          100,000 devices
#   N=20000 GW_PROCS=2 LOAD_PROCS=2 bench/devices.sh        smaller
#
# Steps, each bounded in time:
#  1. builds warren; starts `warren serve -procs GW_PROCS` (SO_REUSEPORT
#     workers under a parent that runs the embedded NATS server, the
#     machine's directory and the management API) on free loopback ports,
#     and waits for its /readyz.
#  2. held + telemetry + commands: one `warren load -scenario devices -procs
#     LOAD_PROCS` run from SOURCES loopback addresses: ramp N devices at
#     RATE/s, hold them idle for HOLD, then TRAFFIC of telemetry at
#     N/5 messages per second (one 100-byte message per device every 5 s)
#     watched on NATS, and COMMANDS per second through the API. During the
#     hold the script samples the RSS of every gateway process (the parent,
#     which runs NATS, and the workers) and reports (held - baseline) / N;
#     then the gateway's CPU per telemetry message, and the cores the
#     gateway and the load generator used during the traffic (when the
#     load generator is near the machine's cores, the latencies are the
#     client's as much as the gateway's); and the prefork parent's own
#     share during the traffic (it runs the embedded NATS server): bytes
#     and allocations per telemetry message, collections a second, cores,
#     and the peak RSS sampled every 2 s (the parent's, every process's).
#  3. storm: the gateway is restarted (SIGTERM drain, start again) and N
#     devices connect at once (no ramp rate, the load generator's 1,024 dials
#     in flight per process); reports the time until all are online and the
#     peak RSS of every gateway process (VmHWM) against MEM_BOUND.
#
# Environment: N (100000), GW_PROCS (6), LOAD_PROCS (6), SOURCES
# (127.0.2.1-127.0.2.16), RATE (5000), HOLD (20s), TRAFFIC (30s), COMMANDS
# (500), RPS (telemetry messages per second: N/5), STORM (1: run step 3), MEM_BOUND (bytes per gateway process: 512 MiB),
# OUT (bench/out), GW_FLAGS (more `warren serve` flags, e.g. "-device-rate 100"), PROTO (ws; mqtt: the devices connect to the gateway's
# -mqtt port as MQTT clients, LOAD_FLAGS such as "-mqtt-version 5 -qos 1"
# reach warren load), HEAP (1: save one worker's heap profile during the
# hold), PROFILE (1: a 10 s CPU profile of one worker from 2 s into the
# traffic, OUT/devices-worker.cpu.pb.gz; not the prefork parent's, i.e.
# the embedded NATS server's: that one is at the admin address's own
# /debug/pprof, e.g. go tool pprof http://ADM/debug/pprof/allocs), TRACE (1: a 5 s runtime trace of
# one worker from 2 s into the traffic, OUT/devices-worker.trace; `go tool
# trace` shows how long the loops wait runnable, and the GC), PERF (1:
# `perf sched record` of the whole machine for 5 s from 2 s into the
# traffic, summarized as each process's scheduling delay: how long its
# threads waited runnable for a CPU; OUT/devices-sched.txt). GOGC and
# GOMEMLIMIT, when set, reach the gateway and are printed.
#
# During the traffic it also reads every thread's /proc/PID/task/TID/schedstat
# (CPU time, run-queue wait, time slices) at its start and at its last 2 s
# sample, and reports by role (the gateway's parent and workers, the load
# generator's parent and workers): how many threads a process ran on (those
# with at least 2% of a core), the share of a process's CPU its busiest
# thread had, the run-queue wait a second and per time slice (one line a
# role; whether the loops stay on their threads: warren serve and warren
# load -lock-threads, docs/benchmarks.md section 60).
#
# Besides the RSS per device, the held figure is split into anonymous
# memory (the processes' own) and file pages (the binary's, which RSS
# counts once per process though the page cache holds them once), and
# given as PSS (shared pages divided among the processes), each as
# (held - baseline) / N.
#
# Linux only (it reads /proc). Every process it starts is stopped by pid.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100000}
GW_PROCS=${GW_PROCS:-6}
LOAD_PROCS=${LOAD_PROCS:-6}
SOURCES=${SOURCES:-127.0.2.1-127.0.2.16}
RATE=${RATE:-5000}
HOLD=${HOLD:-20s}
TRAFFIC=${TRAFFIC:-30s}
COMMANDS=${COMMANDS:-500}
RPS=${RPS:-$((N / 5))}
STORM=${STORM:-1}
MEM_BOUND=${MEM_BOUND:-$((512 << 20))}
OUT=${OUT:-bench/out}
PROTO=${PROTO:-ws}
read -r -a LOAD_FLAGS <<<"${LOAD_FLAGS:-}"
read -r -a GW_FLAGS <<<"${GW_FLAGS:-}"

PROG=devices
# shellcheck source=bench/lib.sh
. bench/lib.sh
[ -r /proc/self/status ] || die "needs Linux /proc"
per=$(((N + GW_PROCS - 1) / GW_PROCS))
[ "$per" -le 19000 ] || die "N=$N over GW_PROCS=$GW_PROCS is $per devices a worker: over the open-file limit"
per=$(((N + LOAD_PROCS - 1) / LOAD_PROCS))
[ "$per" -le 19000 ] || die "N=$N over LOAD_PROCS=$LOAD_PROCS is $per devices a process: over the open-file limit"
gw_setup

DEV=$(free_port)
API=$(free_port)
ADM=$(free_port)
NATSP=$(free_port)
MQTTP=$(free_port)
URL="ws://127.0.0.1:$DEV/v1/connect"
[ "$PROTO" = mqtt ] && URL="mqtt://127.0.0.1:$MQTTP"

GW_PID=
start_gateway() {
  WARREN_JWT_SECRET=$SECRET "$BIN/warren" serve -procs "$GW_PROCS" -addr "127.0.0.1:$DEV" -api "127.0.0.1:$API" \
    -admin "127.0.0.1:$ADM" -nats-listen "127.0.0.1:$NATSP" -mqtt "127.0.0.1:$MQTTP" -data "$DATA" -log-level warn \
    "${GW_FLAGS[@]}" >>"$OUT/devices-gateway.log" 2>&1 &
  GW_PID=$!
  PIDS+=("$GW_PID")
  gw_wait_ready "$OUT/devices-gateway.log"
  sleep 1
}

# online: devices online on the gateway, summed over its workers.
online() {
  curl -fsS "http://127.0.0.1:$ADM/metrics" 2>/dev/null |
    awk '/^warren_gateway_devices_online/ {s += $2} END {printf "%d\n", s}'
}
# gw_cpu: the gateway's CPU time so far in clock ticks (utime + stime of
# every process).
gw_cpu() {
  local p t=0
  for p in $(gw_pids); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
  echo "$t"
}
# parent_cpu: the gateway parent's CPU time so far (the embedded NATS
# server, the machine's directory and the management API).
parent_cpu() { awk '{print $14 + $15}' "/proc/$GW_PID/stat" 2>/dev/null || echo 0; }
# gw_split: the gateway's memory in kB, all its processes together, as
# "anon file pss": RssAnon (the processes' own memory: heaps, stacks),
# RssFile (mapped files, i.e. the warren binary's pages, which the seven
# processes share in the page cache but RSS counts in each) and Pss (each
# shared page divided among the processes that map it: what the machine
# really spends).
gw_split() {
  local p a=0 f=0 s=0 x
  for p in $(gw_pids); do
    x=$(awk '/^RssAnon:/ {a = $2} /^RssFile:/ {f = $2} END {print a + 0, f + 0}' "/proc/$p/status" 2>/dev/null || echo "0 0")
    a=$((a + ${x% *}))
    f=$((f + ${x#* }))
    s=$((s + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)))
  done
  echo "$a $f $s"
}
# runq_ns PID...: nanoseconds the processes' threads have waited runnable
# on a CPU's run queue so far (/proc/PID/task/*/schedstat, field 2): how
# much the machine's scheduler, not the code, delayed them.
runq_ns() {
  local p
  for p in "$@"; do cat /proc/"$p"/task/*/schedstat 2>/dev/null || true; done | awk '{s += $2} END {printf "%.0f\n", s}'
}
# sched_record FILE: 5 s of `perf sched record` on the whole machine,
# summarized into FILE as each process's threads' scheduling delay (from
# being woken to running), by role: the gateway's parent (NATS) and
# workers, the load generator's parent (the NATS subscriber, the API
# client) and workers, everything else.
sched_record() {
  command -v perf >/dev/null || { echo "PERF=1: no perf (apt-get install -y --no-install-recommends linux-perf)" >"$1"; return 0; }
  local roles data=$OUT/devices-perf.data p t
  roles=$(
    for p in $(gw_pids); do for t in /proc/"$p"/task/*; do echo "${t##*/} gw-$([ "$p" = "$GW_PID" ] && echo parent || echo worker)"; done; done
    for p in "$LOAD_PID" $(pgrep -P "$LOAD_PID" || true); do for t in /proc/"$p"/task/*; do echo "${t##*/} load-$([ "$p" = "$LOAD_PID" ] && echo parent || echo worker)"; done; done
  )
  perf sched record -a -o "$data" -- sleep 5 >/dev/null 2>&1 || { echo "perf sched record failed" >"$1"; return 0; }
  perf sched timehist -i "$data" 2>/dev/null | python3 -c '
import sys
roles = dict(l.split() for l in sys.argv[1].splitlines() if l.strip())
agg = {}
for line in sys.stdin:
    f = line.split()
    # time cpu task[tid/pid] wait sch_delay run
    if len(f) < 6 or not f[0][0].isdigit():
        continue
    task = f[2]
    tid = task.rsplit("[", 1)[-1].split("]")[0].split("/")[0] if "[" in task else ""
    try:
        delay = float(f[4])
        run = float(f[5])
    except ValueError:
        continue
    r = roles.get(tid, "idle" if task.startswith("<idle>") else "other")
    a = agg.setdefault(r, [0, 0.0, 0.0, []])
    a[0] += 1; a[1] += delay; a[2] += run; a[3].append(delay)
print("scheduling delay over 5 s (perf sched timehist: woken until running, per switch-in), by role:")
for r, (n, d, run, ds) in sorted(agg.items()):
    if r == "idle":
        continue
    ds.sort()
    p99 = ds[min(len(ds) - 1, int(len(ds) * 0.99))]
    print(f"  {r:12s} {n:7d} runs, ran {run/5000:.2f} cores, delay total {d/5000:.3f} s/s, mean {d/max(n,1):.3f} ms, p99 {p99:.2f} ms, max {ds[-1]:.2f} ms")
' "$roles" >"$1"
  rm -f "$data"
}
# thread_roles: "pid role" for every process of the gateway and of the
# load generator (read once at the traffic's start, for thread_snap).
thread_roles() {
  local p
  for p in $(gw_pids); do echo "$p gw-$([ "$p" = "$GW_PID" ] && echo parent || echo worker)"; done
  for p in "$LOAD_PID" $(pgrep -P "$LOAD_PID" || true); do echo "$p load-$([ "$p" = "$LOAD_PID" ] && echo parent || echo worker)"; done
}
# thread_snap: one line a thread of the processes in THR_ROLES, "role pid
# tid cpu_ns runq_ns slices" (/proc/PID/task/TID/schedstat), read by one
# awk (the benchmark's machine is busy: no process per thread).
thread_snap() {
  local files=() p
  for p in $(awk '{print $1}' <<<"$THR_ROLES"); do files+=(/proc/"$p"/task/*/schedstat); done
  awk -v roles="$THR_ROLES" 'BEGIN {n = split(roles, l, "\n"); for (i = 1; i <= n; i++) {split(l[i], f, " "); r[f[1]] = f[2]}}
    {split(FILENAME, f, "/"); print r[f[3]], f[3], f[5], $1, $2, $3}' "${files[@]}" 2>/dev/null || true
}
# thread_summary SECONDS: from the snapshots $1 s apart in THR0 and THR1,
# by role: processes, threads that ran (>= 2% of a core) per process and
# how many carry 90% of its CPU, the busiest thread's share of its
# process's CPU, run-queue wait a second (summed over the role's threads)
# and per time slice.
thread_summary() {
  python3 -c '
import sys
span = float(sys.argv[1])
def load(text):
    d = {}
    for l in text.splitlines():
        f = l.split()
        if len(f) == 6:
            d[(f[0], f[1], f[2])] = (int(f[3]), int(f[4]), int(f[5]))
    return d
a, b = load(sys.argv[2]), load(sys.argv[3])
roles = {}
for k, (c1, w1, s1) in b.items():
    c0, w0, s0 = a.get(k, (0, 0, 0))
    roles.setdefault(k[0], {}).setdefault(k[1], []).append((c1 - c0, w1 - w0, s1 - s0))
print("threads during the traffic (schedstat, %.1f s): by role, processes; threads that ran >= 2%% of a core per process, and how many carry 90%% of its CPU; the busiest thread'"'"'s share of its process'"'"'s CPU; run-queue wait s/s and per time slice" % span)
for r in ("gw-parent", "gw-worker", "load-parent", "load-worker"):
    ps = roles.get(r)
    if not ps:
        continue
    busy, top, n90, cpu, wait, sl = [], [], [], 0, 0, 0
    for ts in ps.values():
        c = sum(t[0] for t in ts)
        busy.append(sum(1 for t in ts if t[0] >= 0.02 * span * 1e9))
        acc, k = 0, 0
        for x in sorted((t[0] for t in ts), reverse=True):
            if acc >= 0.9 * c:
                break
            acc += x; k += 1
        n90.append(k)
        if c > 0:
            top.append(max(t[0] for t in ts) / c)
        cpu += c; wait += sum(t[1] for t in ts); sl += sum(t[2] for t in ts)
    print(f"  {r:11s} {len(ps)} procs, {cpu/span/1e9:.2f} cores; threads that ran {sum(busy)/len(ps):.1f} a process (max {max(busy)}), {sum(n90)/len(ps):.1f} carry 90% of its CPU; busiest thread {100*sum(top)/max(len(top),1):.0f}% of its process; run-queue wait {wait/span/1e9:.3f} s/s, {wait/max(sl,1)/1e3:.1f} µs a slice, {sl/span:.0f} slices/s")
' "$1" "$THR0" "$THR1"
}
# parent_mem: the gateway parent's runtime counters so far, "TotalAlloc
# Mallocs NumGC" (from its admin's /debug/pprof/heap?debug=1, which ends
# with runtime.MemStats): with the parent's RSS, sampled during the
# traffic for its bytes and allocations per telemetry message and its
# collections a second.
parent_mem() {
  curl -fsS "http://127.0.0.1:$ADM/debug/pprof/heap?debug=1" 2>/dev/null |
    awk '/^# TotalAlloc = / {a = $4} /^# Mallocs = / {m = $4} /^# NumGC = / {g = $4} END {printf "%.0f %.0f %.0f\n", a, m, g}'
}
# sysc PID...: the processes' read and write system calls so far, "r w"
# (/proc/PID/io syscr, syscw).
sysc() {
  local p
  for p in "$@"; do cat /proc/"$p"/io 2>/dev/null || true; done | awk '/^syscr:/ {r += $2} /^syscw:/ {w += $2} END {printf "%.0f %.0f\n", r, w}'
}
# load_cpu: the load generator's CPU time so far (its parent and its -procs
# workers), to tell a saturated client from a saturated gateway.
load_cpu() {
  local p t=0
  for p in "$LOAD_PID" $(pgrep -P "$LOAD_PID" || true); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}

echo "# devices.sh $(date -u +%FT%TZ): PROTO=$PROTO LOAD_FLAGS=${LOAD_FLAGS[*]} N=$N GW_PROCS=$GW_PROCS LOAD_PROCS=$LOAD_PROCS RATE=$RATE HOLD=$HOLD TRAFFIC=$TRAFFIC COMMANDS=$COMMANDS RPS=$RPS GOGC=${GOGC:-} GOMEMLIMIT=${GOMEMLIMIT:-} GOMAXPROCS=${GOMAXPROCS:-}"
echo "# $(machine_line)"
: >"$OUT/devices-gateway.log"
start_gateway
base=$(median_rss 3)
read -r base_anon base_file base_pss <<<"$(gw_split)"
echo "gateway baseline RSS: $base kB over $(gw_pids | wc -w) processes (anon $base_anon kB, file $base_file kB; PSS $base_pss kB)"


WARREN_JWT_SECRET=$SECRET "$BIN/warren" load -scenario devices -url "$URL" "${LOAD_FLAGS[@]}" -conns "$N" \
  -procs "$LOAD_PROCS" -src "$SOURCES" -rate "$RATE" -hold "$HOLD" -duration "$TRAFFIC" -rps "$RPS" \
  -nats "nats://127.0.0.1:$NATSP" -commands "$COMMANDS" -api "http://127.0.0.1:$API" -timeout 10s -grace 5s \
  -quiet -json "$OUT/devices-load.json" >"$OUT/devices-load.txt" 2>"$OUT/devices-load.err" &
LOAD_PID=$!
PIDS+=("$LOAD_PID")
# Wait for the ramp, then sample RSS inside the hold.
hold_s=${HOLD%s}
for ((i = 0; i < 1200; i++)); do
  n=$(online)
  [ "$n" -ge "$N" ] && break
  kill -0 "$LOAD_PID" 2>/dev/null || break
  sleep 0.5
done
kill -0 "$LOAD_PID" 2>/dev/null || { cat "$OUT/devices-load.err" >&2; die "warren load ended during the ramp"; }
echo "devices online: $(online) of $N"
cpu0=$(gw_cpu)
pcpu0=$(parent_cpu)
lcpu0=$(load_cpu)
tcpu0=$(date +%s.%N)
sleep 3
held=$(median_rss $((hold_s > 12 ? 7 : 3)))
echo "gateway RSS held: $held kB; per device: $(((held - base) * 1024 / N)) B (target <= 1024)"
read -r held_anon held_file held_pss <<<"$(gw_split)"
echo "  of which anon $held_anon kB ($(((held_anon - base_anon) * 1024 / N)) B per device), file $held_file kB ($(((held_file - base_file) * 1024 / N)) B per device: the binary's pages, counted once per process); PSS $held_pss kB ($(((held_pss - base_pss) * 1024 / N)) B per device)"
for p in $(gw_pids); do echo "  pid $p $(tr '\0' ' ' </proc/"$p"/cmdline | cut -c1-40): $(rss_kb "$p") kB"; done
if [ "${HEAP:-0}" = 1 ]; then
  # One worker's heap after a GC, during the hold (go tool pprof -sample_index=inuse_space).
  wadm=$(curl -fsS "http://127.0.0.1:$ADM/workers" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["admin"])')
  curl -fsS "http://$wadm/metrics" | awk '/^go_memstats_(heap_alloc|heap_inuse|heap_idle|heap_released|next_gc|sys)_bytes / {printf "  worker %s: %s %.1f MB\n", w, $1, $2 / 1048576}' w="$wadm"
  curl -fsS -o "$OUT/devices-heap.pb.gz" "http://$wadm/debug/pprof/heap?gc=1" && echo "heap profile of worker $wadm: $OUT/devices-heap.pb.gz"
fi
# The workers' CPU before the load ends (a worker's ticks leave with it).
cpu1=$cpu0
pcpu1=$pcpu0
lcpu1=$lcpu0
tcpu1=$tcpu0
# The traffic phase's own start, about: the hold began when the gateway
# counted every device online (give it 2 s).
ttraffic=$(echo "$tcpu0 + $hold_s + 2" | bc)
tt0=
PROF_PIDS=()
rm -f "$OUT"/devices-worker.cpu.pb.gz "$OUT"/devices-worker.trace
while kill -0 "$LOAD_PID" 2>/dev/null; do
  c=$(gw_cpu)
  l=$(load_cpu)
  if [ -z "$tt0" ] && [ "$(echo "$(date +%s.%N) >= $ttraffic" | bc)" = 1 ]; then
    tt0=$(date +%s.%N) gt0=$c lt0=$l
    grq0=$(runq_ns $(gw_pids)) lrq0=$(runq_ns "$LOAD_PID" $(pgrep -P "$LOAD_PID" || true))
    THR_ROLES=$(thread_roles)
    THR0=$(thread_snap)
    read -r wr0 ww0 <<<"$(sysc $(pgrep -P "$GW_PID"))"
    read -r pr0 pw0 <<<"$(sysc "$GW_PID")"
    read -r pa0 pm0 pg0 <<<"$(parent_mem)"
    pct0=$(parent_cpu)
    prss=0 grss=0
    if [ "${PROFILE:-0}" = 1 ] || [ "${TRACE:-0}" = 1 ] || [ "${PERF:-0}" = 1 ]; then
      wadm=$(curl -fsS "http://127.0.0.1:$ADM/workers" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["admin"])')
      if [ "${PROFILE:-0}" = 1 ]; then
        (sleep 2; curl -fsS -o "$OUT/devices-worker.cpu.pb.gz" "http://$wadm/debug/pprof/profile?seconds=10") &
        PROF_PIDS+=($!)
      fi
      if [ "${PERF:-0}" = 1 ]; then
        (sleep 2; sched_record "$OUT/devices-sched.txt") &
        PROF_PIDS+=($!)
      fi
      if [ "${TRACE:-0}" = 1 ]; then
        (sleep 2; curl -fsS -o "$OUT/devices-worker.trace" "http://$wadm/debug/pprof/trace?seconds=5") &
        PROF_PIDS+=($!)
      fi
    fi
  fi
  if [ "$c" -gt "$cpu1" ]; then
    cpu1=$c
    tcpu1=$(date +%s.%N)
  fi
  [ "$l" -gt "$lcpu1" ] && lcpu1=$l
  polls=$((${polls:-0} + 1))
  if [ -n "$tt0" ] && [ $((polls % 4)) = 0 ] && [ "$c" -gt "$gt0" ] && [ "$(pgrep -c -P "$LOAD_PID" || true)" -ge "$LOAD_PROCS" ]; then
    # while the traffic runs (the workers' threads leave with them),
    # every 2 s: this loop's own processes are the machine's too
    grq1=$(runq_ns $(gw_pids)) lrq1=$(runq_ns "$LOAD_PID" $(pgrep -P "$LOAD_PID" || true)) trq1=$(date +%s.%N)
    THR1=$(thread_snap)
    read -r wr1 ww1 <<<"$(sysc $(pgrep -P "$GW_PID"))"
    read -r pr1 pw1 <<<"$(sysc "$GW_PID")"
    read -r pa1 pm1 pg1 <<<"$(parent_mem)"
    pct1=$(parent_cpu)
    x=$(rss_kb "$GW_PID" 2>/dev/null || echo 0)
    [ "$x" -gt "$prss" ] && prss=$x
    x=$(gw_rss)
    [ "$x" -gt "$grss" ] && grss=$x
  fi
  pcpu1=$(parent_cpu)
  sleep 0.5
done
wait "$LOAD_PID" || echo "warren load exited $?"
for p in "${PROF_PIDS[@]}"; do wait "$p" || true; done # the profiles' curls
for f in devices-worker.cpu.pb.gz devices-worker.trace; do
  if { [ "${PROFILE:-0}" = 1 ] || [ "${TRACE:-0}" = 1 ]; } && [ -s "$OUT/$f" ]; then echo "profile: $OUT/$f"; fi
done
[ "${PERF:-0}" = 1 ] && [ -s "$OUT/devices-sched.txt" ] && cat "$OUT/devices-sched.txt"
cat "$OUT/devices-load.txt"
msgs=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["devices"]; print(d["telemetry_received"] or d["telemetry_sent"])' "$OUT/devices-load.json" 2>/dev/null || echo 0)
hz=$(getconf CLK_TCK)
if [ "$msgs" -gt 0 ]; then
  echo "gateway CPU from the end of the ramp to the end of the traffic (idle hold included, every gateway process): $(((cpu1 - cpu0) * 1000000 / hz / msgs)) µs per telemetry message ($((cpu1 - cpu0)) ticks at $hz/s, $msgs messages; the parent, i.e. the embedded NATS server, the directory and the API, $(((pcpu1 - pcpu0) * 1000000 / hz / msgs)) µs of it)"
fi
span=$(echo "${tcpu1} - ${tt0:-$tcpu1}" | bc)
if [ "$(echo "$span > 1" | bc)" = 1 ]; then
  echo "CPU during the traffic ($(printf '%.1f' "$span") s, of $(nproc) cores): gateway $(echo "scale=2; ($cpu1 - $gt0) / $hz / $span" | bc) cores, load generator $(echo "scale=2; ($lcpu1 - $lt0) / $hz / $span" | bc) cores"
  if [ -n "${trq1:-}" ]; then
    rqs=$(echo "$trq1 - $tt0" | bc)
    echo "run-queue wait during the traffic (threads runnable but not running, summed; per second of traffic): gateway $(echo "scale=3; ($grq1 - $grq0) / 1000000000 / $rqs" | bc) s/s, load generator $(echo "scale=3; ($lrq1 - $lrq0) / 1000000000 / $rqs" | bc) s/s"
    thread_summary "$rqs" || true
    # per telemetry message due in the same span (RPS a second): how
    # many reads and writes the workers (device frames in, NATS out) and
    # the parent (the NATS server) make for each
    tm=$(echo "$RPS * $rqs" | bc)
    if [ "$GW_PROCS" -gt 1 ] && [ "${pa1:-0}" -gt "${pa0:-0}" ]; then
      echo "gateway parent during the traffic (the embedded NATS server, the directory, the API): $(echo "($pa1 - $pa0) / $tm" | bc) B and $(echo "scale=1; ($pm1 - $pm0) / $tm" | bc) allocations per telemetry message, $(echo "scale=1; ($pg1 - $pg0) / $rqs" | bc) collections a second, $(echo "scale=2; ($pct1 - $pct0) / $hz / $rqs" | bc) cores; peak RSS sampled $prss kB (the parent), $grss kB (the gateway, every process)"
    fi
    echo "system calls per telemetry message during the traffic: workers $(echo "scale=2; ($wr1 - $wr0) / $tm" | bc) reads, $(echo "scale=2; ($ww1 - $ww0) / $tm" | bc) writes; parent (NATS) $(echo "scale=2; ($pr1 - $pr0) / $tm" | bc) reads, $(echo "scale=2; ($pw1 - $pw0) / $tm" | bc) writes"
  fi
fi
# Where the commands' time goes, from the gateway's own histograms
# (warren_gateway_command_duration_seconds): the prefork parent's
# (worker="parent": the API's, from the command's handler to the ack
# back in the parent) and the workers' (a worker delivering a command to
# its device until the ack). Reported as the share within 10 and 20 ms
# (bucket bounds, exact) and a p99 interpolated within its bucket.
curl -fsS "http://127.0.0.1:$ADM/metrics" 2>/dev/null | python3 -c '
import re, sys
h = {}
for line in sys.stdin:
    m = re.match(r"warren_gateway_command_duration_seconds_bucket\{(.*)\} (\S+)", line)
    if not m:
        continue
    labels = dict(re.findall(r"(\w+)=\"([^\"]*)\"", m.group(1)))
    who = "parent (API)" if labels.get("worker") == "parent" else "workers (delivery)"
    le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
    h.setdefault(who, {}).setdefault(le, 0.0)
    h[who][le] += float(m.group(2))
for who, b in sorted(h.items()):
    les = sorted(b)
    n = b[les[-1]]
    if n == 0:
        continue
    def share(x):
        return b.get(x, 0) / n * 100
    prev, p99 = 0.0, None
    for le in les:
        if b[le] >= 0.99 * n:
            lo = [l for l in les if l < le]
            lo_le = lo[-1] if lo else 0.0
            lo_n = b[lo_le] if lo else 0.0
            p99 = lo_le + (le - lo_le) * (0.99 * n - lo_n) / max(b[le] - lo_n, 1) if le != float("inf") else lo_le
            break
    print(f"gateway command histogram, {who}: {int(n)} commands, {share(0.01):.1f}% within 10 ms, {share(0.02):.1f}% within 20 ms, p99 about {p99*1000:.1f} ms")
' || true
tail -n 5 "$OUT/devices-load.err"

if [ "$STORM" = 1 ]; then
  echo "# storm: restart the gateway, then $N devices connect at once"
  stop_pid "$GW_PID" 60
  start_gateway
  t0=$(date +%s.%N)
  WARREN_JWT_SECRET=$SECRET "$BIN/warren" load -scenario devices -url "$URL" "${LOAD_FLAGS[@]}" -conns "$N" \
    -procs "$LOAD_PROCS" -src "$SOURCES" -hold 5s -timeout 30s -quiet -json "$OUT/devices-storm.json" \
    >"$OUT/devices-storm.txt" 2>"$OUT/devices-storm.err" &
  LOAD_PID=$!
  PIDS+=("$LOAD_PID")
  all=
  for ((i = 0; i < 1200; i++)); do
    n=$(online)
    if [ "$n" -ge "$N" ]; then
      all=$(echo "$(date +%s.%N) - $t0" | bc)
      break
    fi
    kill -0 "$LOAD_PID" 2>/dev/null || break
    sleep 0.25
  done
  echo "storm: $(online) of $N online; all online after ${all:-never} s (target 30 s)"
  over=0
  for p in $(gw_pids); do
    hwm=$(hwm_kb "$p")
    echo "  pid $p peak RSS $hwm kB"
    [ $((hwm * 1024)) -le "$MEM_BOUND" ] || over=$((over + 1))
  done
  echo "storm: $over gateway processes over the memory bound of $((MEM_BOUND >> 20)) MiB"
  wait "$LOAD_PID" || echo "warren load exited $?"
  grep -E "^(connects|conns|ramp)" "$OUT/devices-storm.txt" || head -n 12 "$OUT/devices-storm.txt"
fi
