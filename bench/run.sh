#!/usr/bin/env bash
# idp-gate beside nginx (a plain proxy) and HAProxy 2.6 (jwt_verify and the
# same claim checks), measured in one run on this machine, and the ratios
# between them. Not part of CI's pass/fail.
#
#   bench/run.sh                       # everything, ~3 minutes
#   BENCH_DURATION=10 bench/run.sh     # longer runs
#
# What it does: installs nginx, haproxy and wrk from Debian if missing;
# builds idp-gate (release); makes an RSA key, its JWKS and PEM public key,
# one token and BENCH_TOKENS distinct ones (bench/gen_tokens.py, kept in
# BENCH_DIR and remade when older than 12 h); starts the origin (nginx,
# `return 200`, also serving the JWKS); then, one proxy at a time, each
# pinned to CPU BENCH_PROXY_CPU with wrk and the origin on BENCH_LOAD_CPU:
#   (a) one token reused on every request,
#   (b) a new token on every request (bench/tokens.lua),
# best of BENCH_REPS runs of BENCH_DURATION s with BENCH_CONNECTIONS
# connections. For each: req/s, p50/p99, the proxy's CPU µs per request
# (utime+stime from /proc/PID/stat before/after, over the requests) and
# how busy its CPU was, and its RSS. Then memory with BENCH_IDLE
# idle keep-alive connections (bench/idle_conns.py, from several
# 127.0.0.x addresses), and idp-gate's CPU per request at 10 vs 10,000
# routes and 10 vs 100,000 organizations. Ratios are against the
# baselines of the same run: absolute numbers move with the machine and
# whatever else runs on it; the ratios are what to compare.
#
# Environment: BENCH_DURATION (3), BENCH_REPS (2), BENCH_CONNECTIONS (50),
# BENCH_TOKENS (100000), BENCH_IDLE (10000), BENCH_PROXY_CPU (0),
# BENCH_LOAD_CPU (1), BENCH_PORT (18600: first of 6 ports), BENCH_DIR
# (target/bench), BENCH_SKIP (space-separated parts to leave out: memory
# scaling logon), BENCH_BASELINE_BIN (another idp-gate binary, say the
# previous commit's release build: measured in the same run as
# `idp-gate-base`, with the ratio of the two).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

DURATION=${BENCH_DURATION:-3}
REPS=${BENCH_REPS:-2}
CONNS=${BENCH_CONNECTIONS:-50}
NTOKENS=${BENCH_TOKENS:-100000}
IDLE=${BENCH_IDLE:-10000}
PCPU=${BENCH_PROXY_CPU:-0}
LCPU=${BENCH_LOAD_CPU:-1}
BASE=${BENCH_PORT:-18600}
SKIP=" ${BENCH_SKIP:-} "
mkdir -p "${BENCH_DIR:-target/bench}"
W=$(cd "${BENCH_DIR:-target/bench}" && pwd)

ORIGIN=$BASE
P_NGINX=$((BASE + 1))
P_HAPROXY=$((BASE + 2))
P_GATE=$((BASE + 3))
P_ADMIN=$((BASE + 4))
ISSUER=https://idp.bench.example/
AUDIENCE=https://api.bench.example
ORG=org_abc123
URL_PATH=/api/configurator/apis

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ------------------------------------------------------------- tools
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  as_root apt-get update -qq
  # Services must not start on install (no init here; a packaged nginx
  # would take port 80).
  guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod +x /usr/sbin/policy-rc.d
    guard=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  [ -n "$guard" ] && as_root rm -f /usr/sbin/policy-rc.d
fi
PATH=$PATH:/usr/sbin
python3 -c 'import cryptography' 2>/dev/null || python3 -m pip install -q cryptography >&2

# Connections: the idle-connection test holds BENCH_IDLE of them.
# (Where the hard limit cannot be raised, HAProxy, which wants two
# descriptors per connection, holds fewer: see memory().)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
[ "$NOFILE" = unlimited ] && NOFILE=65536
[ "$NOFILE" -gt 65536 ] && NOFILE=65536
HA_MAXCONN=$(((NOFILE - 100) / 2))

cargo build --release --locked --bin idp-gate >&2
GATE=${CARGO_TARGET_DIR:-$root/target}/release/idp-gate

# ------------------------------------------------------------- keys and tokens
stamp=$W/tokens.stamp
if [ ! -s "$W/tokens.txt" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$NTOKENS" ] ||
  [ -n "$(find "$stamp" -mmin +720 2>/dev/null)" ]; then
  echo "generating a key and $NTOKENS tokens in $W" >&2
  python3 bench/gen_tokens.py "$W" "$NTOKENS" "$ISSUER" "$AUDIENCE" "$ORG" 86400
  echo "$NTOKENS" >"$stamp"
fi
TOKEN=$(cat "$W/token.txt")

# ------------------------------------------------------------- measuring
TICK=$(getconf CLK_TCK)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# The process and its children (nginx's master and worker).
tree() { echo "$1" $(pgrep -P "$1" || true); }
ticks() { # pids... -> "utime stime", all threads
  local u=0 s=0 p a b
  for p in "$@"; do
    read -r a b < <(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12, $13}')
    u=$((u + a)) s=$((s + b))
  done
  echo "$u $s"
}
rss_kib() {
  local r=0 p
  for p in "$@"; do r=$((r + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done
  echo "$r"
}
wait_for() { # url [status]
  local i
  for i in $(seq 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null)" = "${2:-200}" ] && return 0
    sleep 0.05
  done
  echo "no answer from $1" >&2
  return 1
}
stop() { # pid
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

results=$W/results.tsv
offset=1 # next token of tokens.txt for scenario (b)

# measure LABEL SCENARIO PORT PID: best of REPS; appends to results.tsv
measure() {
  local label=$1 scenario=$2 port=$3 pid=$4
  local best_rps=0 line="" rep
  for rep in $(seq "$REPS"); do
    local procs out t0 t1 w0 w1
    procs=$(tree "$pid")
    local args=(-t1 -c"$CONNS" -d"${DURATION}s" --latency)
    if [ "$scenario" = a ]; then
      args+=(-H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$port$URL_PATH")
    else
      args+=(-s bench/tokens.lua "http://127.0.0.1:$port$URL_PATH" -- "$W/tokens.txt" "$offset")
    fi
    # shellcheck disable=SC2086
    t0=$(ticks $procs)
    w0=$(date +%s%N)
    out=$(taskset -c "$LCPU" wrk "${args[@]}")
    w1=$(date +%s%N)
    # shellcheck disable=SC2086
    t1=$(ticks $procs)
    local n rps p50 p99 bad rss
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    bad=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    bad=${bad:-0}
    # Requests still in flight when wrk stopped used tokens too: skip past them.
    [ "$scenario" = b ] && offset=$((offset + n + 2 * CONNS))
    # shellcheck disable=SC2086
    rss=$(rss_kib $procs)
    local cpu_us busy user_us sys_us u0 s0 u1 s1
    read -r u0 s0 <<<"$t0"
    read -r u1 s1 <<<"$t1"
    cpu_us=$(awk -v t=$((u1 + s1 - u0 - s0)) -v k="$TICK" -v n="$n" 'BEGIN {printf "%.1f", t / k * 1e6 / n}')
    user_us=$(awk -v t=$((u1 - u0)) -v k="$TICK" -v n="$n" 'BEGIN {printf "%.1f", t / k * 1e6 / n}')
    sys_us=$(awk -v t=$((s1 - s0)) -v k="$TICK" -v n="$n" 'BEGIN {printf "%.1f", t / k * 1e6 / n}')
    busy=$(awk -v t=$((u1 + s1 - u0 - s0)) -v k="$TICK" -v w=$((w1 - w0)) 'BEGIN {printf "%.0f", 100 * t / k / (w / 1e9)}')
    if awk -v a="$rps" -v b="$best_rps" 'BEGIN {exit !(a > b)}'; then
      best_rps=$rps
      line=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$label" "$scenario" "$rps" "$p50" "$p99" "$cpu_us" "$busy" "$rss" "$bad" "$user_us" "$sys_us")
    fi
  done
  echo "$line" >>"$results"
  printf '  %-26s (%s) %10s req/s  p50 %-8s p99 %-8s %6s CPU us/req  CPU %3s%%  RSS %s KiB  non-2xx %s  user %s sys %s\n' \
    $(cut -f1-11 <<<"$line" | tr ' ' '_') >&2
}

# memory LABEL PORT PID [COUNT]: RSS with COUNT (default BENCH_IDLE) idle
# keep-alive connections
memory() {
  local label=$1 port=$2 pid=$3 count=${4:-$IDLE}
  [[ $SKIP == *" memory "* ]] && return 0
  local procs before after out i
  procs=$(tree "$pid")
  # shellcheck disable=SC2086
  before=$(rss_kib $procs)
  out=$W/idle.out
  : >"$out"
  taskset -c "$LCPU" python3 bench/idle_conns.py "$port" "$count" "$W/token.txt" 120 >"$out" &
  local client=$!
  for i in $(seq 1200); do
    grep -q ready "$out" && break
    sleep 0.1
  done
  sleep 1
  # shellcheck disable=SC2086
  after=$(rss_kib $procs)
  local ok
  ok=$(awk '/ready/ {print $2}' "$out")
  stop "$client"
  printf '%s\t%s\t%s\t%s\t%s\n' "$label" "$before" "$after" "${ok:-0}" "$count" >>"$W/memory.tsv"
  printf '  %-26s RSS %s KiB -> %s KiB with %s idle connections (%s answered 200)\n' \
    "$label" "$before" "$after" "$count" "${ok:-0}" >&2
}

# ------------------------------------------------------------- configs
cat >"$W/origin.conf" <<EOF
worker_processes 1;
pid $W/origin.pid;
events { worker_connections $((NOFILE - 64)); }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$ORIGIN backlog=4096;
    location = /jwks.json { default_type application/json; alias $W/jwks.json; }
    location / { return 200 "ok\n"; }
  }
}
EOF

cat >"$W/nginx.conf" <<EOF
worker_processes 1;
pid $W/nginx.pid;
events { worker_connections $((NOFILE - 64)); }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  upstream origin { server 127.0.0.1:$ORIGIN; keepalive 256; }
  server {
    listen 127.0.0.1:$P_NGINX backlog=4096;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF

# The same checks as idp-gate's route: RS256 only, signature, exp, iss,
# aud, the organization; the verified organization sent upstream.
cat >"$W/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn $HA_MAXCONN
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
  option http-keep-alive
frontend gate
  bind 127.0.0.1:$P_HAPROXY
  maxconn $HA_MAXCONN
  http-request deny deny_status 401 unless { req.hdr(authorization) -m found }
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request set-var(txn.iss) var(txn.bearer),jwt_payload_query('\$.iss')
  http-request set-var(txn.aud) var(txn.bearer),jwt_payload_query('\$.aud')
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
  http-request set-var(txn.org) var(txn.bearer),jwt_payload_query('\$.org_id')
  http-request set-var(txn.now) date()
  http-request deny deny_status 401 unless { var(txn.alg) -m str RS256 }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$W/pub.pem") -m int 1 }
  http-request deny deny_status 401 unless { var(txn.iss) -m str $ISSUER }
  http-request deny deny_status 401 unless { var(txn.aud) -m str $AUDIENCE }
  http-request deny deny_status 401 if { var(txn.exp),sub(txn.now) -m int lt 0 }
  http-request deny deny_status 403 unless { var(txn.org) -m str $ORG }
  http-request set-header X-Forwarded-Org %[var(txn.org)]
  default_backend origin
backend origin
  http-reuse always
  server origin 127.0.0.1:$ORIGIN maxconn $HA_MAXCONN
EOF

# gate_config ROUTES ORGS: ROUTES-1 public routes before the protected one
# (first match wins: each is tried), ORGS trusted organizations and
# ORGS-1 organizationUpstreams entries (0: neither).
gate_config() {
  local routes=$1 orgs=$2
  cat <<EOF
listen: 127.0.0.1:$P_GATE
admin:
  listen: 127.0.0.1:$P_ADMIN
limits:
  maxConnections: 30000
  maxConnectionsPerClient: 30000
  headerReadTimeoutMs: 300000
  idleTimeoutMs: 300000
idp:
  issuer: $ISSUER
  jwksEndpoint: http://127.0.0.1:$ORIGIN/jwks.json
  organizationClaim: org_id
  audiences: [$AUDIENCE]
  algorithms: [RS256]
upstreams:
  origin:
    url: http://127.0.0.1:$ORIGIN
    maxConnections: 30000
  origin2:
    url: http://127.0.0.1:$ORIGIN
EOF
  if [ "$orgs" -gt 0 ]; then
    echo "organizations:"
    echo "  $ORG: {name: org1}"
    seq 1 $((orgs - 1)) | awk '{printf "  org_%08d: {name: tenant%d}\n", $1, $1}'
  fi
  echo "routes:"
  if [ "$routes" -gt 1 ]; then
    seq 1 $((routes - 1)) | awk '{printf "  - name: decoy%d\n    match: {pathPrefix: /svc%d/v1}\n    auth: none\n    upstream: origin\n", $1, $1}'
  fi
  cat <<EOF
  - name: configurator
    match: {pathPrefix: /api/configurator}
    allow:
      organizations: [$ORG]
    upstream: origin
EOF
  if [ "$orgs" -gt 1 ]; then
    echo "    organizationUpstreams:"
    seq 1 $((orgs - 1)) | awk '{printf "      org_%08d: origin2\n", $1}'
  fi
}

# start_gate CONFIG [RUST_LOG]: sets GATE_PID
start_gate() {
  local config=$1 log=${2:-warn}
  env RUST_LOG="$log" taskset -c "$PCPU" "$GATE" run --config "$config" 2>/dev/null &
  GATE_PID=$!
  pids+=("$GATE_PID")
  wait_for "http://127.0.0.1:$P_ADMIN/readyz"
  wait_for "http://127.0.0.1:$P_GATE$URL_PATH" 401
}
# measure_fresh_b LABEL CONFIG RUST_LOG: scenario (b) for idp-gate, each
# run on a gateway started afresh, so no token is in its cache from an
# earlier run (a run sends fewer than BENCH_TOKENS requests, so none
# repeats within it); keeps the best run, like measure. Sets CACHE_B.
measure_fresh_b() {
  local label=$1 config=$2 log=$3 rep h=0 m=0 h0 m0 h1 m1 best
  local all=$W/fresh-b.tsv
  : >"$all"
  for rep in $(seq "$REPS"); do
    start_gate "$config" "$log"
    read -r h0 m0 <<<"$(cache_counts)"
    REPS=1 measure "$label" b "$P_GATE" "$GATE_PID" 2>/dev/null
    read -r h1 m1 <<<"$(cache_counts)"
    h=$((h + h1 - h0)) m=$((m + m1 - m0))
    stop "$GATE_PID"
    tail -1 "$results" >>"$all"
    sed -i '$ d' "$results"
  done
  best=$(sort -t$'\t' -k3,3 -g -r "$all" | head -1)
  echo "$best" >>"$results"
  printf '  %-26s (%s) %10s req/s  p50 %-8s p99 %-8s %6s CPU us/req  CPU %3s%%  RSS %s KiB  non-2xx %s  user %s sys %s\n' \
    $(cut -f1-11 <<<"$best" | tr ' ' '_') >&2
  CACHE_B="token cache during (b): $h hits, $m misses"
  echo "  $CACHE_B" >&2
}
cache_counts() {
  curl -s "http://127.0.0.1:$P_ADMIN/metrics" |
    awk '/^idp_gate_token_cache_hits_total/ {h=$2} /^idp_gate_token_cache_misses_total/ {m=$2} END {printf "%d %d", h, m}'
}

# ------------------------------------------------------------- profile
# bench/run.sh profile: idp-gate (no access log) under wrk in each
# scenario, sampled with `perf record -g` (Debian's linux-perf), and the top
# of `perf report --no-children` for each, then the same self time summed
# by component (bench/perf_groups.awk). BENCH_PERF_CALLGRAPH=dwarf unwinds
# through Rust frames (the release build has no frame pointers);
# BENCH_ROUTES / BENCH_ORGS profile a config with that many routes or
# organizations; BENCH_RUST_LOG=info with the access log.
if [ "${1:-}" = profile ]; then
  if ! command -v perf >/dev/null 2>&1; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-perf >&2
  fi
  taskset -c "$LCPU" nginx -e "$W/origin-error.log" -c "$W/origin.conf" -g 'daemon off;' &
  pids+=($!)
  wait_for "http://127.0.0.1:$ORIGIN/jwks.json"
  gate_config "${BENCH_ROUTES:-1}" "${BENCH_ORGS:-0}" >"$W/gate-profile.yaml"
  start_gate "$W/gate-profile.yaml" "${BENCH_RUST_LOG:-warn}"
  for s in a b; do
    if [ "$s" = a ]; then
      args=(-H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$P_GATE$URL_PATH")
    else
      args=(-s bench/tokens.lua "http://127.0.0.1:$P_GATE$URL_PATH" -- "$W/tokens.txt" "$offset")
    fi
    taskset -c "$LCPU" wrk -t1 -c"$CONNS" -d"$((DURATION + 2))s" "${args[@]}" >"$W/perf-$s.wrk" &
    wrkpid=$!
    sleep 1
    perf record -q --call-graph "${BENCH_PERF_CALLGRAPH:-fp}" -F "${BENCH_PERF_FREQ:-1999}" \
      -p "$GATE_PID" -o "$W/perf-$s.data" -- sleep "$DURATION" 2>/dev/null
    wait "$wrkpid"
    offset=$((offset + 2 * CONNS + $(awk '/requests in/ {print $1}' "$W/perf-$s.wrk")))
    echo
    echo "== scenario ($s): perf report --no-children, idp-gate ($W/perf-$s.data)"
    awk '/Requests\/sec/ {print "   wrk: " $2 " req/s"}' "$W/perf-$s.wrk"
    perf report -i "$W/perf-$s.data" --no-children --stdio -g none --sort dso,symbol 2>/dev/null |
      grep -v '^#' | grep -v '^$' | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//; s/[[:space:]]+$//' >"$W/perf-$s.txt"
    head -"${BENCH_PERF_LINES:-40}" "$W/perf-$s.txt"
    echo "   by component (self time):"
    bench/perf_groups.awk "$W/perf-$s.txt"
  done
  exit 0
fi

# bench/run.sh syscalls: system calls, context switches and page faults per
# request of each proxy in both scenarios, counted by `perf stat` over
# exactly one wrk run (the kernel's share of a proxied request is most of
# its cost).
if [ "${1:-}" = syscalls ]; then
  events=raw_syscalls:sys_enter,context-switches,page-faults
  for c in read write writev readv recvfrom sendto recvmsg sendmsg epoll_wait epoll_ctl getrandom futex brk mmap munmap madvise; do
    events=$events,syscalls:sys_enter_$c
  done
  taskset -c "$LCPU" nginx -e "$W/origin-error.log" -c "$W/origin.conf" -g 'daemon off;' &
  pids+=($!)
  wait_for "http://127.0.0.1:$ORIGIN/jwks.json"
  count() { # label port pid
    local n s args
    for s in a b; do
      if [ "$s" = a ]; then
        args=(-H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$2$URL_PATH")
      else
        args=(-s bench/tokens.lua "http://127.0.0.1:$2$URL_PATH" -- "$W/tokens.txt" "$offset")
      fi
      perf stat -x, -e "$events" -p "$(tree "$3" | tr ' ' ,)" -o "$W/syscalls-$1-$s.csv" -- \
        taskset -c "$LCPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" "${args[@]}" >"$W/syscalls-$1-$s.wrk"
      n=$(awk '/requests in/ {print $1}' "$W/syscalls-$1-$s.wrk")
      [ "$s" = b ] && offset=$((offset + n + 2 * CONNS))
      awk -F, -v n="$n" -v l="$1 ($s)" '$3 ~ /:|context|fault/ && $1 ~ /^[0-9]/ {
        e = $3; sub(/^.*sys_enter_?/, "", e); if (e == "") e = "all syscalls"
        if ($1 / n >= 0.01) printf "  %-14s %-16s %6.2f per request\n", l, e, $1 / n }' "$W/syscalls-$1-$s.csv"
    done
  }
  taskset -c "$PCPU" nginx -e "$W/nginx-error.log" -c "$W/nginx.conf" -g 'daemon off;' &
  p=$!
  pids+=("$p")
  wait_for "http://127.0.0.1:$P_NGINX$URL_PATH"
  count nginx "$P_NGINX" "$p"
  stop "$p"
  taskset -c "$PCPU" haproxy -db -f "$W/haproxy.cfg" 2>"$W/haproxy.log" &
  p=$!
  pids+=("$p")
  wait_for "http://127.0.0.1:$P_HAPROXY$URL_PATH" 401
  count haproxy "$P_HAPROXY" "$p"
  stop "$p"
  gate_config 1 0 >"$W/gate.yaml"
  start_gate "$W/gate.yaml" warn
  count idp-gate "$P_GATE" "$GATE_PID"
  exit 0
fi

# ------------------------------------------------------------- run
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$results"
: >"$W/memory.tsv"
: >"$W/idle_rss.tsv.new"

taskset -c "$LCPU" nginx -e "$W/origin-error.log" -c "$W/origin.conf" -g 'daemon off;' &
pids+=($!)
wait_for "http://127.0.0.1:$ORIGIN/jwks.json"

echo "nginx (plain proxy)" >&2
taskset -c "$PCPU" nginx -e "$W/nginx-error.log" -c "$W/nginx.conf" -g 'daemon off;' &
p=$!
pids+=("$p")
wait_for "http://127.0.0.1:$P_NGINX$URL_PATH"
sleep 0.2
printf 'nginx\t%s\n' "$(rss_kib $(tree "$p"))" >>"$W/idle_rss.tsv.new"
measure nginx a "$P_NGINX" "$p"
measure nginx b "$P_NGINX" "$p"
memory nginx "$P_NGINX" "$p"
stop "$p"

echo "HAProxy $(haproxy -v | awk 'NR == 1 {print $3}') (jwt_verify)" >&2
haproxy -c -q -f "$W/haproxy.cfg"
taskset -c "$PCPU" haproxy -db -f "$W/haproxy.cfg" 2>"$W/haproxy.log" &
p=$!
pids+=("$p")
wait_for "http://127.0.0.1:$P_HAPROXY$URL_PATH" 401
curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$P_HAPROXY$URL_PATH"
printf 'haproxy\t%s\n' "$(rss_kib "$p")" >>"$W/idle_rss.tsv.new"
measure haproxy a "$P_HAPROXY" "$p"
measure haproxy b "$P_HAPROXY" "$p"
memory haproxy "$P_HAPROXY" "$p" $((IDLE < HA_MAXCONN - 100 ? IDLE : HA_MAXCONN - 100))
stop "$p"

echo "idp-gate (RUST_LOG=warn: no access log)" >&2
gate_config 1 0 >"$W/gate.yaml"
start_gate "$W/gate.yaml" warn
curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$P_GATE$URL_PATH"
printf 'idp-gate\t%s\n' "$(rss_kib "$GATE_PID")" >>"$W/idle_rss.tsv.new"
measure idp-gate a "$P_GATE" "$GATE_PID"
memory idp-gate "$P_GATE" "$GATE_PID"
stop "$GATE_PID"
measure_fresh_b idp-gate "$W/gate.yaml" warn
cache_b=$CACHE_B

if [ -n "${BENCH_BASELINE_BIN:-}" ]; then
  echo "idp-gate baseline ($BENCH_BASELINE_BIN; no access log)" >&2
  this_gate=$GATE
  GATE=$BENCH_BASELINE_BIN
  start_gate "$W/gate.yaml" warn
  measure idp-gate-base a "$P_GATE" "$GATE_PID"
  stop "$GATE_PID"
  measure_fresh_b idp-gate-base "$W/gate.yaml" warn
  GATE=$this_gate
fi

if [[ $SKIP != *" logon "* ]]; then
  echo "idp-gate (access log on, the default; to /dev/null)" >&2
  start_gate "$W/gate.yaml" info
  measure idp-gate+log a "$P_GATE" "$GATE_PID"
  stop "$GATE_PID"
  measure_fresh_b idp-gate+log "$W/gate.yaml" info
fi

if [[ $SKIP != *" scaling "* ]]; then
  echo "idp-gate scaling (reused token, no access log)" >&2
  for spec in "10 0" "10000 0" "1 10" "1 100000"; do
    read -r nr no <<<"$spec"
    gate_config "$nr" "$no" >"$W/gate-$nr-$no.yaml"
    start_gate "$W/gate-$nr-$no.yaml" warn
    measure "gate/${nr}r/${no}o" a "$P_GATE" "$GATE_PID"
    stop "$GATE_PID"
  done
fi
mv "$W/idle_rss.tsv.new" "$W/idle_rss.tsv"
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------- report
get() { awk -F'\t' -v l="$1" -v s="$2" -v c="$3" '$1 == l && $2 == s {print $c}' "$results"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}'; }
verdict() { awk -v r="$1" -v g="$2" -v op="$3" 'BEGIN {ok = (op == "le") ? r <= g : r >= g; print ok ? "met" : "MISSED"}'; }

cpu_model=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
{
  echo
  echo "# bench/run.sh, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine: nproc $(nproc), ${cpu_model:-unknown CPU}; load average at start $load_start, at end $load_end"
  echo "each proxy alone on CPU $PCPU; wrk (1 thread, $CONNS connections) and the origin on CPU $LCPU; best of $REPS x ${DURATION}s"
  echo "versions: $("$GATE" version 2>/dev/null | head -1); $(nginx -v 2>&1 | sed 's/.*: //'); HAProxy $(haproxy -v | awk 'NR == 1 {print $3}'); wrk $(wrk -v 2>&1 | awk 'NR == 1 {print $2}')"
  for s in a b; do
    echo
    [ "$s" = a ] && echo "(a) one token reused" || echo "(b) a new token every request ($NTOKENS distinct tokens)"
    printf '| %-24s | %9s | %8s | %8s | %10s | %11s | %7s | %8s | %7s |\n' proxy "req/s" p50 p99 "CPU us/req" "user + sys" "CPU %" "RSS MiB" "non-2xx"
    printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..26})" "-----------:" "---------:" "---------:" "-----------:" "------------:" "--------:" "---------:" "--------:"
    awk -F'\t' -v s="$s" '$2 == s && $1 !~ /^gate\// {
      printf "| %-24s | %9.0f | %8s | %8s | %10s | %11s | %7s | %8.1f | %7s |\n", $1, $3, $4, $5, $6, $10 " + " $11, $7, $8 / 1024, $9 }' "$results"
  done
  echo
  echo "ratios, idp-gate (no access log) against the baselines of this run:"
  r=$(ratio "$(get idp-gate a 6)" "$(get nginx a 6)")
  echo "  (a) CPU us/req, idp-gate / nginx:      $r  (goal <= 1.0: $(verdict "$r" 1.0 le))"
  r=$(ratio "$(get idp-gate a 3)" "$(get haproxy a 3)")
  echo "  (a) req/s, idp-gate / HAProxy:         $r  (goal >= 2.0: $(verdict "$r" 2.0 ge))"
  r=$(ratio "$(get idp-gate a 6)" "$(get haproxy a 6)")
  echo "  (a) CPU us/req, idp-gate / HAProxy:    $r"
  r=$(ratio "$(get idp-gate b 6)" "$(get haproxy b 6)")
  echo "  (b) CPU us/req, idp-gate / HAProxy:    $r  (goal <= 0.8: $(verdict "$r" 0.8 le))"
  r=$(ratio "$(get idp-gate b 3)" "$(get haproxy b 3)")
  echo "  (b) req/s, idp-gate / HAProxy:         $r"
  if [ -n "$(get idp-gate-base a 6)" ]; then
    echo "  this build / the baseline build, CPU us/req: (a) $(ratio "$(get idp-gate a 6)" "$(get idp-gate-base a 6)")  (b) $(ratio "$(get idp-gate b 6)" "$(get idp-gate-base b 6)")"
  fi
  if [ -n "$(get idp-gate+log a 6)" ]; then
    echo "  access log on / off, CPU us/req:       (a) $(ratio "$(get idp-gate+log a 6)" "$(get idp-gate a 6)")  (b) $(ratio "$(get idp-gate+log b 6)" "$(get idp-gate b 6)")"
  fi
  echo "  $cache_b"
  if [ -s "$W/memory.tsv" ]; then
    echo
    echo "memory: RSS idle (after start and one request); before and with N idle keep-alive connections (one request each)"
    awk -F'\t' 'NR == FNR {idle[$1] = $2; next} {
      per = ($3 - $2) / ($4 > 0 ? $4 : 1)
      printf "  %-10s idle %6.1f MiB   before %6.1f MiB   with %5d connections %6.1f MiB   %5.1f KiB per connection (%d answered 200)\n",
        $1, idle[$1] / 1024, $2 / 1024, $5, $3 / 1024, per, $4 }' "$W/idle_rss.tsv" "$W/memory.tsv"
    per=$(awk -F'\t' '$1 == "idp-gate" {printf "%.1f", ($3 - $2) / ($4 > 0 ? $4 : 1)}' "$W/memory.tsv")
    echo "  idp-gate per connection: $per KiB (goal <= 16: $(verdict "$per" 16 le))"
  fi
  if [ -n "$(get gate/10r/0o a 6)" ]; then
    echo
    echo "scaling, idp-gate CPU us/req with the token reused:"
    a=$(get gate/10r/0o a 6) b=$(get gate/10000r/0o a 6)
    r=$(ratio "$b" "$a")
    echo "  routes 10: $a   10,000: $b   ratio $r  (goal <= 1.10: $(verdict "$r" 1.10 le))"
    a=$(get gate/1r/10o a 6) b=$(get gate/1r/100000o a 6)
    r=$(ratio "$b" "$a")
    echo "  organizations 10: $a   100,000: $b   ratio $r  (goal <= 1.10: $(verdict "$r" 1.10 le))"
  fi
} | tee "$W/report.txt"
