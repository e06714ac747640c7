#!/usr/bin/env bash
# tls-idle-mem.sh — server memory per idle TLS connection: warren's TLS
# (its record layer on the loop, TLS 1.3 and TLS 1.2) against crypto/tls
# with a goroutine per connection, and plain TCP warren, in the same run.
#
#   flock /tmp/warren-bench.lock bench/tls-idle-mem.sh
#   N=5000 RUNS=1 bench/tls-idle-mem.sh
#   SERVERS="warren-tls13 netecho-tls" bench/tls-idle-mem.sh
#
# For every run and server it makes a throwaway ECDSA P-256 certificate,
# starts the server on a free loopback port, takes its baseline RSS (median
# of 3 samples), opens N connections with bench/cmd/idleclient -tls VERSION
# (each completes the handshake, sends "hi\n" once and reads the echo, then
# stays idle), waits for READY, settles SETTLE seconds, takes the median of
# SAMPLES RSS samples over SPAN seconds and reports (loaded - baseline) / N.
#
# Servers:
#   warren          warren echo -proto tcp, plain TCP (the floor)
#   warren-tls13    the same with -tls-cert/-tls-key, clients speak TLS 1.3
#   warren-tls13-keep  the same with -tls-keep-ciphers (AEADs kept per connection)
#   warren-tls13-w2 the same with -tls-handshake-workers 2 (fewer handshakes in
#                   progress during the ramp: a lower heap peak)
#   warren-tls12    warren with TLS, clients speak TLS 1.2
#   warren-tls12-w2 the same with -tls-handshake-workers 2
#   warren-tls13-gogc50, warren-tls12-gogc50
#                   warren-tls13/12 with GOGC=50: the garbage collector
#                   target `warren serve` (the device gateway) runs with by
#                   default (-gogc 50); `warren echo` keeps Go's 100
#   netecho-tls     bench/cmd/netecho -tls-cert: crypto/tls, a goroutine and
#                   a 4 KiB buffer per connection (what a Go program does)
#   netecho-tls12   the same, clients speak TLS 1.2
#   nginx-tls       nginx (one worker, OpenSSL) with an HTTPS server block;
#                   clients send nothing after the handshake (nginx does not
#                   echo), so its figure is an idle connection waiting for a
#                   request. The worker's RSS is measured.
#   nginx-tls12     the same, clients speak TLS 1.2
#
# The admission bounds are lifted for the benchmark (-tls-rate-per-ip -1
# -tls-rate -1): they are what the storm test is about, not this one.
# Environment: N (15000), RUNS (1), SERVERS, CONC (100), SETTLE (3),
# SAMPLES (5), SPAN (2), OPEN_TIMEOUT (240), OUT (bench/out). Linux only.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-15000}
RUNS=${RUNS:-1}
SERVERS=${SERVERS:-"warren warren-tls13 warren-tls12 netecho-tls"}
CONC=${CONC:-100}
SETTLE=${SETTLE:-3}
SAMPLES=${SAMPLES:-5}
SPAN=${SPAN:-2}
OPEN_TIMEOUT=${OPEN_TIMEOUT:-240}
OUT=${OUT:-bench/out}

PROG=tls-idle-mem
BIN=$OUT/$PROG
# shellcheck source=bench/lib.sh
. bench/lib.sh
[ -r /proc/self/status ] || die "needs Linux /proc"
command -v openssl >/dev/null || die "needs openssl (to make the test certificate)"
# nginx (a peer) is not on a fresh machine: install it when a run needs it.
if [[ " $SERVERS " == *" nginx"* ]] && ! command -v nginx >/dev/null; then
  echo "installing nginx-light"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nginx-light; } >/dev/null 2>&1 ||
    die "nginx is missing and apt-get install nginx-light failed"
fi

mkdir -p "$BIN"
echo "building into $BIN ..."
go build -o "$BIN/warren" ./cmd/warren
for p in idleclient netecho; do go build -o "$BIN/$p" "./bench/cmd/$p"; done
LOGDIR=$(pwd)/$OUT/logs/tls-idle-mem-$(date +%Y%m%d-%H%M%S)
mkdir -p "$LOGDIR"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -keyout "$LOGDIR/key.pem" -out "$LOGDIR/cert.pem" >/dev/null 2>&1 || die "openssl could not make a certificate"
TLSF=(-tls-cert "$LOGDIR/cert.pem" -tls-key "$LOGDIR/key.pem" -tls-rate-per-ip -1 -tls-rate -1 -tls-ban-threshold -1)

sample_rss() {
  local pid=$1 count=$2 span=$3 gap i
  gap=$(awk -v s="$span" -v c="$count" 'BEGIN {print (c > 1) ? s / (c - 1) : 0}')
  for ((i = 0; i < count; i++)); do
    kill -0 "$pid" 2>/dev/null || die "server pid $pid died while sampling"
    rss_kb "$pid"
    if [ "$i" -lt $((count - 1)) ]; then sleep "$gap"; fi
  done | median
}

# start_nginx LOG: nginx with one worker on a free port; sets SRV_PID to
# the worker (the master is stopped through PIDS).
start_nginx() {
  local log=$1 port i master
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$LOGDIR/nginx"
  cat >"$LOGDIR/nginx/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
error_log $LOGDIR/nginx/error.log;
pid $LOGDIR/nginx/nginx.pid;
worker_rlimit_nofile 19500;
events { worker_connections 19000; }
http {
  access_log off;
  client_header_timeout 900s;
  keepalive_timeout 900s;
  server {
    listen 127.0.0.1:$port ssl;
    ssl_certificate $LOGDIR/cert.pem;
    ssl_certificate_key $LOGDIR/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { return 200 "hello"; }
  }
}
NGINX
  nginx -p "$LOGDIR/nginx" -c "$LOGDIR/nginx/nginx.conf" >"$log" 2>&1 &
  master=$!
  PIDS+=("$master")
  SRV_ADDR=127.0.0.1:$port
  for ((i = 0; i < 100; i++)); do
    SRV_PID=$(pgrep -P "$master" | head -n 1 || true)
    [ -n "$SRV_PID" ] && return 0
    kill -0 "$master" 2>/dev/null || { cat "$log" "$LOGDIR/nginx/error.log" >&2; die "nginx exited at start"; }
    sleep 0.1
  done
  die "nginx started no worker"
}

start() { # start NAME LOG: sets SRV_PID, SRV_ADDR, CLIENT_TLS, PAYLOAD
  local name=$1 log=$2 i
  CLIENT_TLS=
  PAYLOAD='hi
'
  case $name in
    nginx-tls | nginx-tls12)
      command -v nginx >/dev/null || die "nginx not installed"
      CLIENT_TLS=1.3
      [ "$name" = nginx-tls12 ] && CLIENT_TLS=1.2
      PAYLOAD=
      start_nginx "$log"
      return 0
      ;;
    warren) "$BIN/warren" echo -proto tcp -admin "" -addr 127.0.0.1:0 >"$log" 2>&1 & ;;
    warren-tls13) CLIENT_TLS=1.3; "$BIN/warren" echo -proto tcp -admin "" -addr 127.0.0.1:0 "${TLSF[@]}" >"$log" 2>&1 & ;;
    warren-tls13-w2) CLIENT_TLS=1.3; "$BIN/warren" echo -proto tcp -admin "" -addr 127.0.0.1:0 "${TLSF[@]}" -tls-handshake-workers 2 >"$log" 2>&1 & ;;
    warren-tls12-w2) CLIENT_TLS=1.2; "$BIN/warren" echo -proto tcp -admin "" -addr 127.0.0.1:0 "${TLSF[@]}" -tls-handshake-workers 2 >"$log" 2>&1 & ;;
    warren-tls13-keep) CLIENT_TLS=1.3; "$BIN/warren" echo -proto tcp -admin "" -addr 127.0.0.1:0 "${TLSF[@]}" -tls-keep-ciphers >"$log" 2>&1 & ;;
    warren-tls12) CLIENT_TLS=1.2; "$BIN/warren" echo -proto tcp -admin "" -addr 127.0.0.1:0 "${TLSF[@]}" >"$log" 2>&1 & ;;
    warren-tls13-gogc50) CLIENT_TLS=1.3; GOGC=50 "$BIN/warren" echo -proto tcp -admin "" -addr 127.0.0.1:0 "${TLSF[@]}" >"$log" 2>&1 & ;;
    warren-tls12-gogc50) CLIENT_TLS=1.2; GOGC=50 "$BIN/warren" echo -proto tcp -admin "" -addr 127.0.0.1:0 "${TLSF[@]}" >"$log" 2>&1 & ;;
    netecho-tls) CLIENT_TLS=1.3; "$BIN/netecho" -addr 127.0.0.1:0 -tls-cert "$LOGDIR/cert.pem" -tls-key "$LOGDIR/key.pem" >"$log" 2>&1 & ;;
    netecho-tls12) CLIENT_TLS=1.2; "$BIN/netecho" -addr 127.0.0.1:0 -tls-cert "$LOGDIR/cert.pem" -tls-key "$LOGDIR/key.pem" >"$log" 2>&1 & ;;
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
  die "$name did not print its address"
}

RESULTS=$LOGDIR/results.tsv
printf 'server\trun\tbase_kb\tloaded_kb\topened\tbytes_per_conn\n' >"$RESULTS"
measure() {
  local name=$1 run=$2 log clog base loaded ready= i cpid bpc pid
  log=$LOGDIR/$name-$run.log
  clog=$LOGDIR/$name-$run-client.log
  start "$name" "$log"
  sleep 1
  base=$(sample_rss "$SRV_PID" 3 1)
  "$BIN/idleclient" -addr "$SRV_ADDR" -n "$N" -src-base 127.0.1.1 -src-count 60 -concurrency "$CONC" -payload "$PAYLOAD" \
    ${CLIENT_TLS:+-tls "$CLIENT_TLS"} -hold 900s -open-timeout "${OPEN_TIMEOUT}s" >"$clog" 2>&1 &
  cpid=$!
  PIDS+=("$cpid")
  for ((i = 0; i < (OPEN_TIMEOUT + 15) * 10; i++)); do
    ready=$(awk '/^READY / {print $2}' "$clog" 2>/dev/null || true)
    [ -n "$ready" ] && break
    kill -0 "$cpid" 2>/dev/null || { cat "$clog" >&2; die "client exited before READY"; }
    sleep 0.1
  done
  [ -n "$ready" ] && [ "$ready" -gt 0 ] || die "$name: client not READY"
  grep '^{' "$clog" | sed "s/^/  $name run $run client: /"
  sleep "$SETTLE"
  loaded=$(sample_rss "$SRV_PID" "$SAMPLES" "$SPAN")
  stop_pid "$cpid" 30
  for pid in "${PIDS[@]}"; do stop_pid "$pid" 30; done
  PIDS=()
  bpc=$(awk -v l="$loaded" -v b="$base" -v n="$ready" 'BEGIN {printf "%.0f", (l - b) * 1024 / n}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$run" "$base" "$loaded" "$ready" "$bpc" >>"$RESULTS"
  printf '  %-18s run %d: baseline %6d kB  loaded %7d kB  opened %6d  => %6d B/conn\n' "$name" "$run" "$base" "$loaded" "$ready" "$bpc"
}

echo "tls-idle-mem: N=$N RUNS=$RUNS SERVERS=\"$SERVERS\""
echo "  $(machine_line)"
echo "  at $(git rev-parse --short HEAD 2>/dev/null || echo unknown); logs in $LOGDIR"
read -r -a order <<<"$SERVERS"
for ((run = 1; run <= RUNS; run++)); do
  for ((j = 0; j < ${#order[@]}; j++)); do
    measure "${order[$(((j + run - 1) % ${#order[@]}))]}" "$run"
  done
done
echo
echo "medians over $RUNS run(s), N=$N (bytes per idle connection):"
for s in $SERVERS; do
  printf '  %-18s %8s\n' "$s" "$(awk -F'\t' -v s="$s" 'NR > 1 && $1 == s {print $6}' "$RESULTS" | median)"
done
