#!/bin/bash
# bench/serve-extras.sh LABEL [serve flags]: one warren serve (embedded NATS, -mqtt "") with
# the extra flags, a warren echo as webhook sink (SINK in the flags is its address, TLSA a free
# port for -tls-addr), and warren load -scenario devices: 2,000 devices, 3,000 msg/s for 15 s.
# SCHEME=wss LOADCA="-ca cert.pem" for devices over wss://localhost:TLSA. WARREN: the binary.
# Run it under flock /tmp/warren-bench.lock. Used for docs/benchmarks.md section 13.
set -u
label=$1; shift
B=${WARREN:-./warren}
ports=($(python3 -c 'import socket
ss=[socket.socket() for _ in range(6)]
[s.bind(("127.0.0.1",0)) for s in ss]
print(" ".join(str(s.getsockname()[1]) for s in ss))'))
A=127.0.0.1:${ports[0]}; API=127.0.0.1:${ports[1]}; ADM=127.0.0.1:${ports[2]}; NATS=127.0.0.1:${ports[3]}; TLSA=127.0.0.1:${ports[4]}; SINK=127.0.0.1:${ports[5]}
data=$(mktemp -d)  # serve's data directory (the JWT secret), read by warren load too
$B echo -addr $SINK -admin "" -log-level warn > sink.log 2>&1 & sinkpid=$!
extra=("$@")
extra=("${extra[@]//SINK/$SINK}")
$B serve -node bench -addr $A -api $API -admin $ADM -nats-listen $NATS -mqtt "" -data "$data" -tls-addr "" -log-level warn "${extra[@]//TLSA/$TLSA}" > serve.log 2>&1 & spid=$!
sleep 2
url=ws://$A/v1/connect
[ "${SCHEME:-ws}" = wss ] && url=wss://localhost:${ports[4]}/v1/connect
$B load -scenario devices -url $url ${LOADCA:-} -data "$data" -conns 2000 -rate 2000 -hold 2s -rps 3000 -duration 15s \
  -nats nats://$NATS -server-pid $spid -admin http://$ADM -json $label.json > $label.out 2>&1
echo "== $label"; grep -E -i 'telemetry|cpu|rss|lost|connect' $label.out | head -20
curl -s http://$ADM/metrics | grep -E '^warren_gateway_webhook|^warren_upstream_rq_total' | head
kill $spid $sinkpid; wait $spid $sinkpid 2>/dev/null; rm -rf "$data"
