#!/usr/bin/env bash
# Throughput and latency of the gateway against its own upstream, measured
# in one run on this machine: wrk straight at the echo upstream (the
# baseline), then through the gateway with a verified token (token cache
# warm), then through a public route (no token). Prints each figure and its
# ratio to the baseline. Needs wrk and a release build:
#   cargo build --release && bench/proxy-overhead.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-32}
bin=target/release/idp-gate
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }

out=$(mktemp)
"$bin" --log-format text demo --port 18480 --admin-port 18481 --idp-port 18482 --upstream-port 18483 >"$out" 2>/dev/null &
demo=$!
trap 'kill $demo 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q "Press Ctrl-C" "$out" && break; sleep 0.1; done
token=$(grep -A1 '^# 1\.' "$out" | tail -1 | sed 's/.*Bearer \([^"]*\)".*/\1/')

run() { # label, url, [header]
  local label=$1 url=$2; shift 2
  local r
  r=$(wrk -t2 -c"$conns" -d"${secs}s" --latency "$@" "$url")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$r")
  p50=$(awk '$1=="50%" {print $2}' <<<"$r")
  p99=$(awk '$1=="99%" {print $2}' <<<"$r")
  printf '%-28s %10s req/s   p50 %-9s p99 %-9s\n' "$label" "$rps" "$p50" "$p99" >&2
  echo "$rps"
}

base=$(run "echo upstream (baseline)" "http://127.0.0.1:18483/api/configurator/apis")
jwt=$(run "gateway, verified JWT" "http://127.0.0.1:18480/api/configurator/apis" -H "Authorization: Bearer $token")
pub=$(run "gateway, public route" "http://127.0.0.1:18480/health")
awk -v b="$base" -v j="$jwt" -v p="$pub" 'BEGIN {
  printf "throughput ratio to baseline: verified JWT %.2f, public route %.2f\n", j / b, p / b }'
