#!/usr/bin/env bash
# What TLS to the backend costs warren proxy (issue 14): wrk through two
# warren proxies to the same nginx backend, one over http://, one over
# https:// (TLS verified with -upstream-ca; keep-alive connections, so
# handshakes are rare), in alternating rounds. Reports per proxy (medians
# of ROUNDS) requests per second, the proxy's CPU time per request
# (user+system over the wrk run / requests) and wrk's p99; then the
# proxy's RSS per idle upstream connection: a fresh proxy per scheme,
# IDLE wrk connections for 3 s (so about IDLE backend connections are
# pooled, -max-idle-per-host IDLE), then (RSS after - RSS before) / the
# backend connections open (warren_upstream_cx_active). The client
# connections are gone by then, but the garbage of the run is in both
# figures alike: the https - http difference is TLS's own cost.
#
#   flock /tmp/warren-bench.lock bench/proxy-tls.sh
#   DURATION=10s CONNS=64 ROUNDS=3 IDLE=1000 bench/proxy-tls.sh
#   ROUNDS=0 bench/proxy-tls.sh    # the idle figures only
#   TLS_PROTOCOLS=TLSv1.2 bench/proxy-tls.sh   # nginx's ssl_protocols
set -euo pipefail
cd "$(dirname "$0")/.."
PROG=bench/proxy-tls.sh
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-2}
IDLE=${IDLE:-1000}
TLS_PROTOCOLS=${TLS_PROTOCOLS:-TLSv1.2 TLSv1.3} # nginx's ssl_protocols (1.22's default lacks 1.3)
OUT=bench/out/proxy-tls
mkdir -p "$OUT"
# shellcheck source=bench/lib.sh
source bench/lib.sh

need_cmd wrk nginx:nginx-light openssl curl
ulimit -n "$(ulimit -Hn)"

go build -o "$OUT/warren" ./cmd/warren
W="$(pwd)/$OUT/warren"

# heap_kb ADMIN: the live heap (HeapInuse right after a forced GC) in KB;
# the first GC empties sync.Pools into their victim caches, the second
# frees those.
heap_kb() {
  curl -s "http://127.0.0.1:$1/debug/pprof/heap?debug=1&gc=1" >/dev/null
  curl -s "http://127.0.0.1:$1/debug/pprof/heap?debug=1&gc=1" | awk '$2 == "HeapInuse" {print int($4 / 1024)}'
}

# The backend: nginx, one worker, plain and TLS on two ports, a
# self-signed certificate for 127.0.0.1 (the proxy's -upstream-ca).
NDIR=$(mktemp -d /tmp/warren-bench-nginx.XXXXXX)
trap 'cleanup; rm -rf "$NDIR"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=backend.test \
  -addext "subjectAltName=IP:127.0.0.1,DNS:backend.test" -keyout "$NDIR/key.pem" -out "$NDIR/cert.pem" >/dev/null 2>&1 ||
  die "openssl could not make a certificate"
HPORT=$(free_port)
SPORT=$(free_port)
cat >"$NDIR/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $NDIR/nginx.pid;
error_log $NDIR/error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $NDIR/body;
  proxy_temp_path $NDIR/proxy;
  fastcgi_temp_path $NDIR/fastcgi;
  uwsgi_temp_path $NDIR/uwsgi;
  scgi_temp_path $NDIR/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 600s;
  ssl_session_tickets on;
  ssl_protocols $TLS_PROTOCOLS;
  server {
    listen 127.0.0.1:$HPORT;
    listen 127.0.0.1:$SPORT ssl;
    ssl_certificate $NDIR/cert.pem;
    ssl_certificate_key $NDIR/key.pem;
    location / { return 200 "hello"; }
  }
}
EOF
nginx -p "$NDIR" -c "$NDIR/nginx.conf" >"$OUT/nginx.log" 2>&1 &
PIDS+=($!)
wait_port "$HPORT"
wait_port "$SPORT"

# start_proxy NAME UPSTREAM FLAGS...: sets <NAME>_PORT, <NAME>_ADMIN, <NAME>_PID.
start_proxy() {
  local name=$1 ups=$2 port admin
  shift 2
  port=$(free_port)
  admin=$(free_port)
  "$W" proxy -listen "127.0.0.1:$port" -admin "127.0.0.1:$admin" -loops "$WORKERS" -upstream "$ups" \
    -upstream-ca "$NDIR/cert.pem" "$@" >"$OUT/$name.log" 2>&1 &
  PIDS+=($!)
  printf -v "${name}_PID" %s $!
  printf -v "${name}_PORT" %s "$port"
  printf -v "${name}_ADMIN" %s "$admin"
  wait_port "$port"
}

# run NAME: one wrk run; prints "rps cpu_us_per_req p99_ms".
run() {
  local name=$1 port pid out c0 c1 hz reqs rps p99
  port=${name}_PORT pid=${name}_PID
  port=${!port} pid=${!pid}
  hz=$(getconf CLK_TCK)
  wrk -t2 -c"$CONNS" -d2s "http://127.0.0.1:$port/" >/dev/null # warm-up
  c0=$(cpu_ticks "$pid")
  out=$(wrk -t2 -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$port/")
  c1=$(cpu_ticks "$pid")
  echo "$out" >>"$OUT/wrk-$name.txt"
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
  p99=$(echo "$out" | wrk_p99_ms)
  awk -v t=$((c1 - c0)) -v hz="$hz" -v n="$reqs" -v rps="$rps" -v p99="$p99" 'BEGIN {printf "%s %.2f %s\n", rps, t / hz * 1e6 / n, p99}'
}

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); $(machine_line); commit $(git rev-parse --short HEAD)$(git diff --quiet || echo +dirty)"
echo "# wrk -t2 -c$CONNS -d$DURATION through warren proxy (-loops $WORKERS) to nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') (1 worker, return 200, ssl_protocols $TLS_PROTOCOLS); http:// vs https:// (TLS verified); $ROUNDS rounds"
if ((ROUNDS > 0)); then
start_proxy plain "http://127.0.0.1:$HPORT"
start_proxy tls "https://127.0.0.1:$SPORT"
: >"$OUT/plain.rounds"
: >"$OUT/tls.rounds"
: >"$OUT/wrk-plain.txt"
: >"$OUT/wrk-tls.txt"
for ((r = 1; r <= ROUNDS; r++)); do
  echo "plain $(run plain)" | tee -a "$OUT/plain.rounds"
  echo "tls $(run tls)" | tee -a "$OUT/tls.rounds"
done
echo "tls handshakes: $(port_metric "$tls_ADMIN" warren_upstream_tls_handshake_total) (resumed $(curl -s "http://127.0.0.1:$tls_ADMIN/metrics" | awk '/^warren_upstream_tls_handshake_kind_total\{kind="resumed"\}/ {print $2}'))"
stop_pid "$plain_PID"
stop_pid "$tls_PID"
echo
printf '%-6s %10s %11s %8s\n' proxy "req/s" "CPU us/req" "p99 ms"
for name in plain tls; do
  printf '%-6s %10s %11s %8s\n' "$name" "$(awk '{print $2}' "$OUT/$name.rounds" | median)" \
    "$(awk '{print $3}' "$OUT/$name.rounds" | median)" "$(awk '{print $4}' "$OUT/$name.rounds" | median)"
done
p=$(awk '{print $3}' "$OUT/plain.rounds" | median)
s=$(awk '{print $3}' "$OUT/tls.rounds" | median)
awk -v p="$p" -v s="$s" 'BEGIN {printf "TLS to the backend: %.2fx the CPU per request of plain http (+%.2f us)\n", s / p, s - p}'
fi

# Idle upstream connections: RSS per connection.
echo
echo "# idle: $IDLE wrk connections for 3s through a fresh proxy per scheme (-max-conns-per-host $IDLE -max-idle-per-host $IDLE -pool-idle-timeout 10m), then RSS"
for name in plain tls; do
  if [ "$name" = plain ]; then ups="http://127.0.0.1:$HPORT"; else ups="https://127.0.0.1:$SPORT"; fi
  start_proxy "idle$name" "$ups" -max-conns-per-host "$IDLE" -max-idle-per-host "$IDLE" -pool-idle-timeout 10m \
    -cb-max-connections $((IDLE * 2)) -cb-max-requests $((IDLE * 2)) -cb-max-pending $((IDLE * 2)) -max-requests-per-host $((IDLE * 2))
  pid=idle${name}_PID port=idle${name}_PORT admin=idle${name}_ADMIN
  pid=${!pid} port=${!port} admin=${!admin}
  curl -s "http://127.0.0.1:$port/" >/dev/null
  sleep 1
  h0=$(heap_kb "$admin")
  r0=$(rss_kb "$pid")
  wrk -t2 -c"$IDLE" -d3s "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
  sleep 3
  h1=$(heap_kb "$admin")
  r1=$(rss_kb "$pid")
  cx=$(port_metric "$admin" warren_upstream_cx_active)
  awk -v n="$name" -v r0="$r0" -v r1="$r1" -v h0="$h0" -v h1="$h1" -v cx="$cx" 'BEGIN {d = cx > 1 ? cx - 1 : 1
    printf "%s: %d backend connections open; live heap %d -> %d KB: %.2f KB per connection; RSS %d -> %d KB: %.2f KB per connection\n", n, cx, h0, h1, (h1 - h0) / d, r0, r1, (r1 - r0) / d}' |
    tee "$OUT/idle-$name.txt"
  awk -v h0="$h0" -v h1="$h1" -v cx="$cx" 'BEGIN {print (h1 - h0) / (cx > 1 ? cx - 1 : 1)}' >"$OUT/idle-$name.heap"
  stop_pid "$pid"
done
p=$(cat "$OUT/idle-plain.heap")
s=$(cat "$OUT/idle-tls.heap")
awk -v p="$p" -v s="$s" 'BEGIN {printf "TLS per idle upstream connection (live heap): +%.2f KB over plain http\n", s - p}'
echo "# $(machine_line)"
