#!/usr/bin/env bash
# The kill -9 fault of issue 14, out of process and at full size: three
# real backend processes (bench/cmd/slowtail, answering at once) behind a
# `warren proxy` process under steady keep-alive GET load; each round kills
# one backend with SIGKILL by its pid, measures from the proxy's
# /api/upstream how soon it leaves rotation, restarts it on the same port
# after DOWN_MS and measures how soon it serves again. The test is
# TestFaultKill9OutOfProcess in cmd/warren (whose default run is the small
# version: 8 clients, one kill); this script runs it with the sizes below
# and prints its FAULT-RESULT line: GETs ok and failed at the client, each
# round's time out of rotation and back, the proxy's retries, reused-
# connection retries, connect failures and ejections.
#
#   flock /tmp/warren-bench.lock bench/proxy-fault.sh
#   CONNS=64 ROUNDS=6 DOWN_MS=2000 bench/proxy-fault.sh
#
# Targets: 0 failed GETs; out of rotation within 1 s; serving again after
# it returns (the test fails otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-6}
DOWN_MS=${DOWN_MS:-2000}
OUT=bench/out/proxy-fault
mkdir -p "$OUT"
echo "proxy-fault: commit $(git rev-parse --short HEAD), $(go version | awk '{print $3}'), $(nproc) CPUs"
echo "load before: $(uptime | sed 's/.*load average: //')"
set +e
WARREN_FAULT_CONNS=$CONNS WARREN_FAULT_ROUNDS=$ROUNDS WARREN_FAULT_DOWN_MS=$DOWN_MS \
  go test -count=1 -timeout 10m -run '^TestFaultKill9OutOfProcess$' -v ./cmd/warren >"$OUT/test.log" 2>&1
rc=$?
set -e
echo "load after:  $(uptime | sed 's/.*load average: //')"
grep -E 'round [0-9]+:|FAULT-RESULT|--- (PASS|FAIL)' "$OUT/test.log" | sed 's/^ *//'
if [ $rc -ne 0 ]; then
  echo "proxy-fault: FAILED (full log: $OUT/test.log)"
  tail -40 "$OUT/test.log"
  exit 1
fi
