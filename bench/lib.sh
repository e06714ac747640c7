# shellcheck shell=bash
# lib.sh — shell helpers the benchmark scripts share; sourced, not run.
# Callers set PROG (for messages) and BIN (where the binaries are) first.
#
# Every process started through these helpers is recorded in PIDS and
# stopped by pid (SIGTERM, a bounded wait, then SIGKILL) when the script
# exits.

die() { echo "$PROG: $*" >&2; exit 1; }

PIDS=()

# stop_pid PID [SECONDS]: SIGTERM, wait at most SECONDS (10), then SIGKILL.
stop_pid() {
  local pid=$1 t=${2:-10} i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < t * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$PROG: pid $pid ignored SIGTERM for ${t}s; killing" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid" 5; done
  PIDS=()
}
trap cleanup EXIT
trap 'echo "$PROG: interrupted" >&2; exit 130' INT TERM

# median: the median of the numbers on stdin, one a line ("-" for none).
median() {
  sort -g | awk '{v[NR] = $1} END {if (NR == 0) {print "-"} else if (NR % 2) {print v[(NR + 1) / 2]} else {print (v[NR / 2] + v[NR / 2 + 1]) / 2}}'
}

# stat_ticks EXPR PID...: the sum over the processes of an awk expression
# of /proc/PID/stat's fields (all threads; a process gone counts 0).
stat_ticks() {
  local expr=$1 t=0 p
  shift
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] || continue
    t=$((t + $(awk "{print $expr}" "/proc/$p/stat")))
  done
  echo "$t"
}

# cpu_ticks PID...: user+system clock ticks of the processes.
cpu_ticks() { stat_ticks '$14 + $15' "$@"; }

# sys_ticks PID...: system clock ticks of the processes.
sys_ticks() { stat_ticks '$15' "$@"; }

# port_metric PORT NAME: the sum of NAME's samples on 127.0.0.1:PORT's
# /metrics (0 when absent).
port_metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 ~ "^"m"({|$)" {s += $2} END {print s + 0}'; }

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# wait_port PORT: waits until something listens on 127.0.0.1:PORT, at most 10 s.
wait_port() {
  local i
  for ((i = 0; i < 100; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  die "nothing listening on $1"
}
# need_cmd CMD[:PACKAGE]...: installs, with apt in one go, the package of
# each CMD that is missing (PACKAGE, default CMD itself).
need_cmd() {
  local spec pkgs=() sudo=sudo
  for spec in "$@"; do
    command -v "${spec%%:*}" >/dev/null || pkgs+=("${spec#*:}")
  done
  [ ${#pkgs[@]} -eq 0 ] && return 0
  echo "installing ${pkgs[*]}"
  [ "$(id -u)" = 0 ] && sudo=
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}"; } >/dev/null 2>&1 ||
    die "could not install ${pkgs[*]}"
}
# free_port: a free TCP port on 127.0.0.1, below the kernel's ephemeral
# range: a port the kernel picks for bind(0) comes from that range, where
# the next outbound connection (the gateway's own NATS clients, a load
# generator's) may take it before our server binds it.
free_port() {
	python3 -c '
import random, socket
lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(1000):
    p = random.randrange(10000, max(lo, 10001))
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        s.close()
else:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])
'
}

# gw_setup: the gateway scripts' start: the open-file limit raised to its
# hard limit, OUT made, warren built into BIN and a data directory DATA
# (temporary directories, removed on exit), a random SECRET for tokens.
gw_setup() {
  ulimit -n "$(ulimit -Hn)"
  mkdir -p "$OUT"
  BIN=$(mktemp -d)
  DATA=$(mktemp -d)
  trap 'cleanup; rm -rf "$BIN" "$DATA"' EXIT
  go build -o "$BIN/warren" ./cmd/warren
  SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
}

# The scripts that run `warren serve -procs GW_PROCS` (devices.sh,
# mqtt-storm.sh, tls-storm.sh) set GW_PID (the prefork parent), GW_PROCS
# and ADM (its admin port) and use these.

# gw_wait_ready LOG [POLL]: waits until the gateway answers /readyz and all
# its workers are up (polling every POLL seconds, 0.1), at most 30 s.
gw_wait_ready() {
  local poll=${2:-0.1} deadline=$((SECONDS + 30))
  while ((SECONDS < deadline)); do
    # With GW_PROCS 1 (or unset) warren serve runs in one process: no workers to count.
    if curl -fsS -o /dev/null "http://127.0.0.1:$ADM/readyz" 2>/dev/null &&
      { [ "${GW_PROCS:-1}" -le 1 ] || [ "$(pgrep -c -P "$GW_PID" || true)" -ge "$GW_PROCS" ]; }; then
      return 0
    fi
    kill -0 "$GW_PID" 2>/dev/null || die "the gateway exited (log: $1)"
    sleep "$poll"
  done
  die "the gateway did not get ready in 30s (log: $1)"
}
# gw_pids: the gateway's parent and its workers.
gw_pids() { echo "$GW_PID" $(pgrep -P "$GW_PID" || true); }
# gw_rss: the gateway's RSS in kB, all its processes together.
gw_rss() {
  local p t=0
  for p in $(gw_pids); do t=$((t + $(rss_kb "$p" 2>/dev/null || echo 0))); done
  echo "$t"
}
# median_rss COUNT: median of COUNT samples of gw_rss, one a second.
median_rss() {
  local i
  for ((i = 0; i < $1; i++)); do
    gw_rss
    sleep 1
  done | median
}

# machine_line: one line describing the machine and its load right now.
machine_line() {
  echo "$(go version | awk '{print $3}'), Linux $(uname -r), $(nproc) cores ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

# has_memstats NAME: whether the server answers SIGUSR1 with a MEMSTATS line.
has_memstats() { [ "$1" = netecho ] || [ "$1" = enginehost ]; }

# memstats PID LOG: asks the server for its Go memory figures and prints
# "heap_inuse stack_inuse" in bytes, or "- -".
memstats() {
  local pid=$1 log=$2 before i
  before=$(grep -c '^MEMSTATS ' "$log" || true)
  kill -USR1 "$pid" 2>/dev/null || { echo "- -"; return; }
  for ((i = 0; i < 30; i++)); do
    if [ "$(grep -c '^MEMSTATS ' "$log" || true)" -gt "$before" ]; then
      grep '^MEMSTATS ' "$log" | tail -n 1 |
        sed -E 's/.*"heap_inuse":([0-9]+).*"stack_inuse":([0-9]+).*/\1 \2/'
      return
    fi
    sleep 0.1
  done
  echo "- -"
}

# check_server NAME: fails unless NAME is a server start_server knows.
check_server() {
  case $1 in warren | warren-noadmin | portable | netecho | enginehost) ;; *) die "unknown server $1" ;; esac
}

# start_server NAME LOG [WRAPPER...]: starts the server on a free loopback
# port (under WRAPPER, e.g. taskset -c 0, when given) and sets SRV_PID and
# SRV_ADDR.
#   warren      warren echo -proto tcp (event loops, handler inline; admin
#               listener on a free port, as shipped)
#   warren-noadmin  the same with -admin "" (no admin listener)
#   portable    warren echo -proto tcp -portable (engine on Go's net package)
#   netecho     bench/cmd/netecho (goroutine per connection, 4 KiB buffer)
#   enginehost  bench/cmd/enginehost (the engine in-process, MEMSTATS on SIGUSR1)
start_server() {
  local name=$1 log=$2 i
  shift 2
  : >"$log"
  case $name in
    warren) "$@" "$BIN/warren" echo -proto tcp -admin 127.0.0.1:0 -addr 127.0.0.1:0 >"$log" 2>&1 & ;;
    warren-noadmin) "$@" "$BIN/warren" echo -proto tcp -admin "" -addr 127.0.0.1:0 >"$log" 2>&1 & ;;
    portable) "$@" "$BIN/warren" echo -proto tcp -portable -admin 127.0.0.1:0 -addr 127.0.0.1:0 >"$log" 2>&1 & ;;
    netecho) "$@" "$BIN/netecho" -addr 127.0.0.1:0 >"$log" 2>&1 & ;;
    enginehost) "$@" "$BIN/enginehost" -addr 127.0.0.1:0 >"$log" 2>&1 & ;;
    *) die "unknown server $name" ;;
  esac
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  SRV_ADDR=
  for ((i = 0; i < 100; i++)); do
    SRV_ADDR=$(grep -E '^listening |warren echo listening' "$log" | head -n 1 |
      grep -oE '(addr=|^listening )[0-9.]+:[0-9]+' | sed -E 's/^(addr=|listening )//' || true)
    [ -n "$SRV_ADDR" ] && return 0
    kill -0 "$SRV_PID" 2>/dev/null || { cat "$log" >&2; die "$name exited at start"; }
    sleep 0.1
  done
  cat "$log" >&2
  die "$name did not print its address within 10 s"
}

# nginx_proxy_conf DIR WORKERS PORT BPORT: writes DIR/nginx.conf, nginx as
# the keep-alive reverse proxy the proxy benchmarks compare against (issue
# 14): WORKERS workers on 127.0.0.1:PORT, 256 idle keep-alive connections
# to the backend on 127.0.0.1:BPORT, no access log, the forwarding headers
# warren proxy adds.
nginx_proxy_conf() {
  local dir=$1 workers=$2 port=$3 bport=$4
  cat >"$dir/nginx.conf" <<EOF
worker_processes $workers;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  keepalive_requests 1000000;
  upstream backend {
    server 127.0.0.1:$bport;
    keepalive 256;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
  }
}
EOF
}

# haproxy_proxy_conf DIR WORKERS PORT BPORT: writes DIR/haproxy.cfg, HAProxy
# as the same keep-alive reverse proxy (nbthread WORKERS, connections to the
# backend reused always).
haproxy_proxy_conf() {
  local dir=$1 workers=$2 port=$3 bport=$4
  cat >"$dir/haproxy.cfg" <<EOF
global
  nbthread $workers
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  option forwardfor
  http-reuse always
frontend f
  bind 127.0.0.1:$port
  default_backend b
backend b
  server s1 127.0.0.1:$bport
EOF
}

# wrk_p99_ms: the 99th percentile latency, in ms, of the `wrk --latency`
# output on stdin (wrk prints it in us, ms or s).
wrk_p99_ms() {
  awk '$1 == "99%" {v = $2; if (v ~ /us$/) {sub(/us/, "", v); v /= 1000} else if (v ~ /ms$/) {sub(/ms/, "", v)} else if (v ~ /s$/) {sub(/s/, "", v); v *= 1000}; print v}'
}

# callgrind_per_request PORT PID TAG LOG: for bench/instr.sh and
# bench/proxy-instr.sh, with $OUT/reqcount built and C and N set: waits
# for PORT to answer (dies when PID, a server under callgrind writing
# $OUT/cg.TAG.<pid>, exits first, with LOG's tail), warms it up with C x 200
# keep-alive requests, zeroes its counters, makes exactly C x N requests
# (every answer checked), dumps, stops PID and prints the dump's
# instructions per request.
callgrind_per_request() {
  local port=$1 pid=$2 tag=$3 log=$4 i f ir
  for ((i = 0; i < 600; i++)); do
    "$OUT/reqcount" -addr "127.0.0.1:$port" -c 1 -n 1 >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || die "server exited: $(tail -3 "$log")"
    sleep 0.1
  done
  "$OUT/reqcount" -addr "127.0.0.1:$port" -c "$C" -n 200 >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  "$OUT/reqcount" -addr "127.0.0.1:$port" -c "$C" -n "$N" >/dev/null
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  stop_pid "$pid" 20
  # The dump taken with -d is the newest file with a numeric suffix.
  f=$(ls -t "$OUT/cg.$tag".* | grep -E '\.[0-9]+\.[0-9]+$' | head -1 || true)
  [ -n "$f" ] || f=$(ls -t "$OUT/cg.$tag".* | head -1)
  ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$f")
  [ -n "$ir" ] || die "no total in $f"
  awk -v ir="$ir" -v n=$((C * N)) 'BEGIN {printf "%.0f\n", ir / n}'
}

# callgrind_rounds: runs the caller's `one BIN TAG` (which prints
# instructions per request) for every binary of BINS in ROUNDS rounds whose
# order rotates, records each in $OUT/runs, then prints per binary the
# median and its ratio to the first binary's.
callgrind_rounds() {
  local k=${#BINS[@]} r i j v m base=
  for ((r = 0; r < ROUNDS; r++)); do
    for ((i = 0; i < k; i++)); do
      j=$(((i + r) % k))
      v=$(one "${BINS[$j]}" "b$j.r$r")
      echo "round $r bin $j ${BINS[$j]} instructions/request $v" | tee -a "$OUT/runs"
    done
  done
  for ((j = 0; j < k; j++)); do
    m=$(awk -v j="$j" '$4 == j {print $NF}' "$OUT/runs" | median)
    [ -z "$base" ] && base=$m
    awk -v j="$j" -v b="${BINS[$j]}" -v m="$m" -v a="$base" 'BEGIN {printf "bin %d %s: median %.0f instructions/request, %.4fx bin 0\n", j, b, m, m / a}'
  done
}
