#!/usr/bin/env bash
# bench/ab.sh A_REPO B_REPO — A/B of two warren checkouts in the same run, for the
# issue-10 "no regression" check. Four figures:
#   tcp-idle  server RSS per idle TCP conn, 15,000 conns   (bench/idle-mem.sh, SERVERS=warren)
#             and its anonymous part alone (tcp-idle-anon: without the binary's pages
#             the first GC pages in, a one-off that differs between builds, §95);
#             ws-idle likewise (ws-idle-anon, when A's `warren load` reports it)
#   ws-idle   server RSS per idle WebSocket, 15,000 conns  (bench/compare.sh ws-idle)
#   http      wrk -t1 -c128 server CPU µs/req, and ÷ fasthttp in the same run (bench/compare.sh http)
#   ws-echo   15,000 WS conns open-loop 10k msg/s, server CPU µs/msg, and ÷ gorilla (bench/compare.sh ws-echo)
#
# How: builds A's and B's warren into $OUT/bin/{A,B}/warren, then runs the
# bench scripts of ONE repo (SCRIPTS=A, default; or B) with:
#   - compare.sh: servers "warren" (= A binary) and "warren-alt" (WARREN_ALT = B
#     binary) [+ the peer] in the same invocation; compare.sh rotates the server
#     order every run, so A and B interleave (A B P, B P A, P A B, ...).
#   - idle-mem.sh (it cannot be pointed at a binary): one RUNS=1 invocation per
#     measurement, alternating A B / B A.
# The scripts build "$BIN/warren" from their own repo; a `go` shim first on PATH
# replaces exactly `go build ... ./cmd/warren` by a copy of $AB_WARREN_BIN, so
# the script measures the binary we chose and its load client (`warren load`) is
# always A's binary, whichever repo's scripts run. The harness checks the copy.
#
# Environment: MEM_RUNS (3), HTTP_RUNS (9), WS_RUNS (7), HTTP_DURATION (8s),
#   WS_DURATION (15s), WS_RPS (10000), N (15000), ONLY ("tcp-idle ws-idle http ws-echo"),
#   SCRIPTS (A), OUT (bench/out/ab-<time>).
# Output: a table on stdout; $OUT/summary.tsv; per-run logs under $OUT/s/logs/.
set -euo pipefail
[ $# -eq 2 ] || { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
A=$(realpath "$1") B=$(realpath "$2")
MEM_RUNS=${MEM_RUNS:-3} HTTP_RUNS=${HTTP_RUNS:-9} WS_RUNS=${WS_RUNS:-7}
HTTP_DURATION=${HTTP_DURATION:-8s} WS_DURATION=${WS_DURATION:-15s} WS_RPS=${WS_RPS:-10000} N=${N:-15000}
ONLY=${ONLY:-"tcp-idle ws-idle http ws-echo"}
SCRIPTS=${SCRIPTS:-A}
case $SCRIPTS in A) S=$A ;; B) S=$B ;; *) echo "SCRIPTS must be A or B" >&2; exit 2 ;; esac
OUT=${OUT:-$(dirname "$0")/out/ab-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/bin/A" "$OUT/bin/B" "$OUT/shim" "$OUT/s"
OUT=$(realpath "$OUT")
for d in "$A" "$B"; do [ -f "$d/go.mod" ] && [ -d "$d/cmd/warren" ] || { echo "$d: not a warren checkout" >&2; exit 2; }; done
for t in jq wrk go; do command -v "$t" >/dev/null || { echo "$t missing (apt-get install -y $t)" >&2; exit 2; }; done
T0=$SECONDS

desc() { # desc DIR: commit and dirty flag
  local c
  c=$(git -C "$1" rev-parse --short HEAD 2>/dev/null || echo unknown)
  git -C "$1" diff --quiet HEAD 2>/dev/null || c="$c+dirty"
  echo "$1@$c"
}
echo "run-ab: A=$(desc "$A")  B=$(desc "$B")  scripts from $SCRIPTS ($S)"
echo "  $(go version | awk '{print $3}'), Linux $(uname -r), $(nproc) cores, $(date -u '+%F %T UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  MEM_RUNS=$MEM_RUNS HTTP_RUNS=$HTTP_RUNS WS_RUNS=$WS_RUNS N=$N; out $OUT"

# ---- build ---------------------------------------------------------------
(cd "$A" && go build -o "$OUT/bin/A/warren" ./cmd/warren)
(cd "$B" && go build -o "$OUT/bin/B/warren" ./cmd/warren)
SUM_A=$(sha256sum <"$OUT/bin/A/warren" | cut -c1-16) SUM_B=$(sha256sum <"$OUT/bin/B/warren" | cut -c1-16)
echo "  binaries: A $SUM_A  B $SUM_B$([ "$SUM_A" = "$SUM_B" ] && echo '  (identical)')"

REALGO=$(command -v go)
cat >"$OUT/shim/go" <<EOF
#!/usr/bin/env bash
# go shim: "go build [flags] -o DEST ./cmd/warren" copies \$AB_WARREN_BIN to DEST.
if [ "\${1:-}" = build ] && [ -n "\${AB_WARREN_BIN:-}" ] && [ "\${!#}" = ./cmd/warren ]; then
  dest=; prev=
  for a in "\$@"; do [ "\$prev" = -o ] && dest=\$a; prev=\$a; done
  if [ -n "\$dest" ]; then
    [ -d "\$dest" ] && dest=\$dest/warren
    cp -f "\$AB_WARREN_BIN" "\$dest.ab.tmp" && mv -f "\$dest.ab.tmp" "\$dest" && exit 0
  fi
fi
exec "$REALGO" "\$@"
EOF
chmod +x "$OUT/shim/go"
# The scripts build peers with `go build -o ../../../$BIN/...`: OUT must be
# relative to the repo root (an absolute OUT puts the peers in the wrong place).
ROUT=$(realpath --relative-to="$S" "$OUT/s")

# run_script LOGFILE WARREN_BIN SCRIPT ARGS... (env passed by the caller):
# runs a bench script of $S with the shim, prints the results.tsv path.
run_script() {
  local log=$1 wbin=$2 script=$3
  shift 3
  if ! AB_WARREN_BIN=$wbin PATH="$OUT/shim:$PATH" OUT=$ROUT bash "$S/bench/$script" "$@" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "run-ab: $script $* failed; log $log" >&2
    exit 1
  fi
  local res
  res=$(awk '/^per-run figures: / {print $3}' "$log" | tail -n 1)
  [ -n "$res" ] || { echo "run-ab: no results line in $log" >&2; exit 1; }
  case $res in /*) ;; *) res=$S/$res ;; esac
  [ -f "$res" ] || { echo "run-ab: $res missing" >&2; exit 1; }
  echo "$res"
}
check_bin() { # check_bin PATH WANT: the shim must have put the chosen binary there
  local got
  got=$(sha256sum <"$1" | cut -c1-16)
  [ "$got" = "$2" ] || { echo "run-ab: $1 is $got, expected $2: the go shim did not take; figures would be wrong" >&2; exit 1; }
}

SUMMARY=$OUT/summary.tsv
printf 'figure\tunit\tA_median\tB_median\tB_over_A\tA_runs\tB_runs\tpaired_B_over_A_runs\tpaired_median\n' >"$SUMMARY"
med() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.3f", a / b}'; }
join_() { paste -sd, -; }
# emit FIGURE UNIT AFILE BFILE [PAIRFILE]: one summary row from files of per-run values.
emit() {
  local am bm
  am=$(med <"$3") bm=$(med <"$4")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$am" "$bm" "$(div "$bm" "$am")" "$(join_ <"$3")" "$(join_ <"$4")" \
    "$( [ -n "${5:-}" ] && join_ <"$5" || echo -)" "$( [ -n "${5:-}" ] && med <"$5" || echo -)" >>"$SUMMARY"
  echo "  ($1 done, $((SECONDS - T0))s since start)"
}

# ---- tcp-idle: bench/idle-mem.sh, one RUNS=1 call per measurement ---------
if [[ " $ONLY " == *" tcp-idle "* ]]; then
  echo "tcp-idle: idle-mem.sh N=$N RUNS=1 SERVERS=warren, $MEM_RUNS x (A,B alternating) ..."
  : >"$OUT/tcp.A"; : >"$OUT/tcp.B"; : >"$OUT/tcpanon.A"; : >"$OUT/tcpanon.B"
  for ((r = 1; r <= MEM_RUNS; r++)); do
    if ((r % 2)); then ord="A B"; else ord="B A"; fi
    for x in $ord; do
      want=$SUM_A wbin=$OUT/bin/A/warren
      [ "$x" = B ] && want=$SUM_B wbin=$OUT/bin/B/warren
      res=$(N=$N RUNS=1 SERVERS=warren run_script "$OUT/tcp-idle-$r-$x.txt" "$wbin" idle-mem.sh)
      check_bin "$OUT/s/idle-mem/warren" "$want"
      v=$(awk -F'\t' 'NR > 1 && $1 == "warren" {print $7}' "$res")
      echo "$v" >>"$OUT/tcp.$x"
      # Column 9 (anonymous RSS per connection) exists in idle-mem.sh since §95; older scripts leave it empty.
      va=$(awk -F'\t' 'NR > 1 && $1 == "warren" {print $9}' "$res")
      [ -n "$va" ] && echo "$va" >>"$OUT/tcpanon.$x"
      echo "  round $r $x: $v B/conn$([ -n "$va" ] && echo ", anonymous $va B/conn") ($(awk -F'\t' 'NR > 1 && $1 == "warren" {print $6}' "$res") opened)"
    done
  done
  paste "$OUT/tcp.A" "$OUT/tcp.B" | awk '$1 > 0 {printf "%.3f\n", $2 / $1}' >"$OUT/tcp.BA"
  emit tcp-idle-15k "B/conn" "$OUT/tcp.A" "$OUT/tcp.B" "$OUT/tcp.BA"
  if [ -s "$OUT/tcpanon.A" ] && [ -s "$OUT/tcpanon.B" ]; then
    paste "$OUT/tcpanon.A" "$OUT/tcpanon.B" | awk '$1 > 0 {printf "%.3f\n", $2 / $1}' >"$OUT/tcpanon.BA"
    emit tcp-idle-anon-15k "B/conn" "$OUT/tcpanon.A" "$OUT/tcpanon.B" "$OUT/tcpanon.BA"
  fi
fi

# compare_pairs RESULTS SERVERCOL VALUECOL FILTERCOL FILTERVAL PEER PREFIX:
# writes PREFIX.A, .B (per-run values), .Ar, .Br (÷ peer in the same run), .BA (B÷A per run).
compare_pairs() {
  awk -F'\t' -v vc="$3" -v fc="$4" -v fv="$5" -v peer="$6" -v p="$7" '
    NR > 1 && (fc == 0 || $fc == fv) && $vc != "-" && $vc != "" {v[$1, $2] = $vc; runs[$2] = 1}
    END {
      for (r = 1; r in runs; r++) {
        a = v["warren", r]; b = v["warren-alt", r]; q = (peer != "") ? v[peer, r] : ""
        if (a != "") print a > (p ".A"); if (b != "") print b > (p ".B")
        if (a != "" && b != "") printf "%.3f\n", b / a > (p ".BA")
        if (q != "" && q > 0) { if (a != "") printf "%.3f\n", a / q > (p ".Ar"); if (b != "") printf "%.3f\n", b / q > (p ".Br") }
      }
    }' "$1"
  touch "$7.A" "$7.B" "$7.BA" "$7.Ar" "$7.Br"
}

# ---- ws-idle: compare.sh ws-idle, warren (A) and warren-alt (B) -----------
if [[ " $ONLY " == *" ws-idle "* ]]; then
  echo "ws-idle: compare.sh ws-idle N=$N RUNS=$MEM_RUNS SERVERS=\"warren warren-alt\" ..."
  res=$(N=$N RUNS=$MEM_RUNS SERVERS="warren warren-alt" WARREN_ALT=$OUT/bin/B/warren \
    run_script "$OUT/ws-idle.txt" "$OUT/bin/A/warren" compare.sh ws-idle)
  check_bin "$OUT/s/compare/warren" "$SUM_A"
  grep -E '^  warren' "$OUT/ws-idle.txt" | sed 's/^/ /'
  compare_pairs "$res" 1 6 0 "" "" "$OUT/wsidle"
  emit ws-idle-15k "B/conn" "$OUT/wsidle.A" "$OUT/wsidle.B" "$OUT/wsidle.BA"
  # Column 8 (anonymous RSS per connection) needs A's `warren load` and scripts from §95 on.
  compare_pairs "$res" 1 8 0 "" "" "$OUT/wsidleanon"
  if [ -s "$OUT/wsidleanon.A" ] && [ -s "$OUT/wsidleanon.B" ]; then
    emit ws-idle-anon-15k "B/conn" "$OUT/wsidleanon.A" "$OUT/wsidleanon.B" "$OUT/wsidleanon.BA"
  fi
fi

# ---- http: compare.sh http, wrk, warren (A), warren-alt (B), fasthttp -----
if [[ " $ONLY " == *" http "* ]]; then
  echo "http: compare.sh http TOOLS=wrk DURATION=$HTTP_DURATION RUNS=$HTTP_RUNS SERVERS=\"warren warren-alt fasthttp\" ..."
  res=$(RUNS=$HTTP_RUNS TOOLS=wrk DURATION=$HTTP_DURATION SERVERS="warren warren-alt fasthttp" WARREN_ALT=$OUT/bin/B/warren \
    run_script "$OUT/http.txt" "$OUT/bin/A/warren" compare.sh http)
  check_bin "$OUT/s/compare/warren" "$SUM_A"
  grep -E '^  (warren|fasthttp).* run ' "$OUT/http.txt" | sed 's/^/ /'
  compare_pairs "$res" 1 5 3 wrk fasthttp "$OUT/http"
  emit http-cpu-vs-fasthttp "x fasthttp" "$OUT/http.Ar" "$OUT/http.Br" "$OUT/http.BA"
  emit http-cpu "us/req" "$OUT/http.A" "$OUT/http.B" "$OUT/http.BA"
fi

# ---- ws-echo: compare.sh ws-echo, 15k conns open-loop, warren, warren-alt, gorilla
if [[ " $ONLY " == *" ws-echo "* ]]; then
  echo "ws-echo: compare.sh ws-echo N=$N RPS=$WS_RPS CLOSED_CONNS=0 DURATION=$WS_DURATION RUNS=$WS_RUNS SERVERS=\"warren warren-alt gorilla\" ..."
  res=$(N=$N RUNS=$WS_RUNS RPS=$WS_RPS CLOSED_CONNS=0 DURATION=$WS_DURATION SERVERS="warren warren-alt gorilla" \
    WARREN_ALT=$OUT/bin/B/warren run_script "$OUT/ws-echo.txt" "$OUT/bin/A/warren" compare.sh ws-echo)
  check_bin "$OUT/s/compare/warren" "$SUM_A"
  grep -E '^  (warren|gorilla).* run ' "$OUT/ws-echo.txt" | sed 's/^/ /'
  compare_pairs "$res" 1 6 3 "open-$WS_RPS" gorilla "$OUT/wsecho"
  emit "ws-echo-15k-cpu-vs-gorilla" "x gorilla" "$OUT/wsecho.Ar" "$OUT/wsecho.Br" "$OUT/wsecho.BA"
  emit "ws-echo-15k-cpu" "us/msg" "$OUT/wsecho.A" "$OUT/wsecho.B" "$OUT/wsecho.BA"
fi

# ---- table ---------------------------------------------------------------
echo
echo "A=$(desc "$A")  B=$(desc "$B")  $(date -u '+%F %T UTC'), load $(cut -d' ' -f1-3 /proc/loadavg), took $(((SECONDS - T0) / 60))m$(((SECONDS - T0) % 60))s"
awk -F'\t' 'NR == 1 {printf "%-28s %-10s %9s %9s %7s %7s  %-6s  %s\n", "figure", "unit", "A med", "B med", "B/A", "pairmed", "check", "per-run B/A (same run) | A runs | B runs"; next}
  {chk = ($5 == "-") ? "?" : (($5 <= 1.05) ? "ok" : "WORSE")
   printf "%-28s %-10s %9s %9s %7s %7s  %-6s  %s | %s | %s\n", $1, $2, $3, $4, $5, $9, chk, $8, $6, $7}' "$SUMMARY"
echo "(lower is better for every figure; B/A = B median / A median; pairmed = median of per-run B/A within the same compare.sh run; check = B/A <= 1.05)"
echo "summary: $SUMMARY"
