#!/usr/bin/env bash
# tls-handshakes.sh — full TLS handshakes per second and per server
# CPU-second (no resumption, ECDHE X25519, ECDSA P-256 certificate): warren
# against nginx (OpenSSL), each server pinned to CPU 0 and the client
# (bench/cmd/tlshs) to CPU 1, in the same run.
#
#   flock /tmp/warren-bench.lock bench/tls-handshakes.sh
#   VERSIONS="1.3" RUNS=1 D=5s bench/tls-handshakes.sh
#
# nginx runs without session tickets or cache (no resumption); warren issues
# a TLS 1.3 session ticket per handshake unless it is warren-notickets
# (-tls-no-session-tickets), the like-for-like comparison.
#
# Environment: SERVERS ("warren-notickets warren nginx"), VERSIONS ("1.3 1.2"), RUNS (3), D
# (8s), C (64 handshakes in flight), WARREN_FLAGS (more `warren echo` flags,
# e.g. "-tls-handshake-nice 10"), WARREN_BIN and TLSHS_BIN (binaries built
# beforehand, used instead of building this checkout's: for A/B runs, where
# nothing may compile inside the benchmark's hold), OUT (bench/out). Linux
# only.
set -euo pipefail
cd "$(dirname "$0")/.."
SERVERS=${SERVERS:-"warren-notickets warren nginx"}
VERSIONS=${VERSIONS:-"1.3 1.2"}
RUNS=${RUNS:-3}
D=${D:-8s}
C=${C:-64}
OUT=${OUT:-bench/out}
PROG=tls-handshakes
BIN=$OUT/$PROG
# shellcheck source=bench/lib.sh
. bench/lib.sh
command -v taskset >/dev/null || die "needs taskset"
# nginx (a peer) is not on a fresh machine: install it when a run needs it.
if [[ " $SERVERS " == *" nginx"* ]] && ! command -v nginx >/dev/null; then
  echo "installing nginx-light"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nginx-light; } >/dev/null 2>&1 ||
    die "nginx is missing and apt-get install nginx-light failed"
fi
mkdir -p "$BIN"
if [ -n "${WARREN_BIN:-}" ]; then cp "$WARREN_BIN" "$BIN/warren"; else go build -o "$BIN/warren" ./cmd/warren; fi
if [ -n "${TLSHS_BIN:-}" ]; then cp "$TLSHS_BIN" "$BIN/tlshs"; else go build -o "$BIN/tlshs" ./bench/cmd/tlshs; fi
case $OUT in /*) LOGDIR=$OUT ;; *) LOGDIR=$(pwd)/$OUT ;; esac
LOGDIR=$LOGDIR/logs/tls-handshakes-$(date +%Y%m%d-%H%M%S)
mkdir -p "$LOGDIR/nginx"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -keyout "$LOGDIR/key.pem" -out "$LOGDIR/cert.pem" >/dev/null 2>&1 || die "openssl could not make a certificate"

freeport() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start() { # start NAME: sets SRV_PID (the process doing the handshakes), SRV_ADDR
  local name=$1 port i master
  port=$(freeport)
  SRV_ADDR=127.0.0.1:$port
  case $name in
    warren | warren-notickets)
      local extra=()
      [ "$name" = warren-notickets ] && extra=(-tls-no-session-tickets)
      # shellcheck disable=SC2086 # WARREN_FLAGS: several flags
      taskset -c 0 "$BIN/warren" echo -proto tcp -admin "" -addr "$SRV_ADDR" -tls-cert "$LOGDIR/cert.pem" -tls-key "$LOGDIR/key.pem" \
        -tls-rate -1 -tls-rate-per-ip -1 -tls-ban-threshold -1 -tls-handshake-queue 4096 "${extra[@]}" ${WARREN_FLAGS:-} >"$LOGDIR/warren.log" 2>&1 &
      SRV_PID=$!
      PIDS+=("$SRV_PID")
      ;;
    nginx)
      cat >"$LOGDIR/nginx/nginx.conf" <<NGINX
worker_processes 1;
worker_cpu_affinity 1;
daemon off;
error_log $LOGDIR/nginx/error.log;
pid $LOGDIR/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  ssl_session_tickets off;
  ssl_session_cache off;
  server {
    listen $SRV_ADDR ssl;
    ssl_certificate $LOGDIR/cert.pem;
    ssl_certificate_key $LOGDIR/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { return 200 "hello"; }
  }
}
NGINX
      taskset -c 0 nginx -p "$LOGDIR/nginx" -c "$LOGDIR/nginx/nginx.conf" >"$LOGDIR/nginx.log" 2>&1 &
      master=$!
      PIDS+=("$master")
      SRV_PID=
      for ((i = 0; i < 50; i++)); do
        SRV_PID=$(pgrep -P "$master" | head -n 1 || true)
        [ -n "$SRV_PID" ] && break
        sleep 0.1
      done
      [ -n "$SRV_PID" ] || die "nginx started no worker"
      ;;
    *) die "unknown server $name" ;;
  esac
  for ((i = 0; i < 50; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  die "$name not listening"
}

hz=$(getconf CLK_TCK)
RESULTS=$LOGDIR/results.tsv
printf 'server\tversion\trun\thandshakes\tper_second\tcpu_seconds\tper_cpu_second\n' >"$RESULTS"
echo "tls-handshakes: SERVERS=\"$SERVERS\" VERSIONS=\"$VERSIONS\" RUNS=$RUNS D=$D C=$C"
echo "  $(machine_line)"
echo "  at $(git rev-parse --short HEAD 2>/dev/null || echo unknown); logs in $LOGDIR"
read -r -a order <<<"$SERVERS"
for v in $VERSIONS; do
  for ((run = 1; run <= RUNS; run++)); do
    for ((j = 0; j < ${#order[@]}; j++)); do
      s=${order[$(((j + run - 1) % ${#order[@]}))]}
      start "$s"
      sleep 0.5
      t0=$(cpu_ticks "$SRV_PID")
      out=$(taskset -c 1 "$BIN/tlshs" -addr "$SRV_ADDR" -c "$C" -d "$D" -tls "$v")
      echo "$s $v $run $out" >>"$LOGDIR/tlshs.log"
      t1=$(cpu_ticks "$SRV_PID")
      for pid in "${PIDS[@]}"; do stop_pid "$pid" 10; done
      PIDS=()
      hsn=$(echo "$out" | sed -E 's/.*"handshakes":([0-9]+).*/\1/')
      ps=$(echo "$out" | sed -E 's/.*"per_second":([0-9.e+]+).*/\1/')
      cpu=$(awk -v a="$t0" -v b="$t1" -v h="$hz" 'BEGIN {printf "%.2f", (b - a) / h}')
      pcs=$(awk -v n="$hsn" -v c="$cpu" 'BEGIN {printf "%.0f", (c > 0) ? n / c : 0}')
      printf '%s\t%s\t%s\t%s\t%.0f\t%s\t%s\n' "$s" "$v" "$run" "$hsn" "$ps" "$cpu" "$pcs" >>"$RESULTS"
      printf '  TLS %s %-7s run %d: %7s handshakes  %6.0f/s  server CPU %6s s  => %6s per CPU-second\n' "$v" "$s" "$run" "$hsn" "$ps" "$cpu" "$pcs"
      sleep 2 # let TIME_WAIT sockets of the run settle a little
    done
  done
done
echo
echo "medians over $RUNS run(s):"
for v in $VERSIONS; do
  for s in $SERVERS; do
    m1=$(awk -F'\t' -v s="$s" -v v="$v" 'NR > 1 && $1 == s && $2 == v {print $5}' "$RESULTS" | median)
    m2=$(awk -F'\t' -v s="$s" -v v="$v" 'NR > 1 && $1 == s && $2 == v {print $7}' "$RESULTS" | median)
    printf '  TLS %s %-7s %8s handshakes/s %8s per server CPU-second\n' "$v" "$s" "$m1" "$m2"
  done
done
