#!/usr/bin/env bash
# CPU per request of grok-server and grok, and their CPU while idle.
#
#   bash tests/bench/cpu_per_request.sh [BUILD_DIR]        # ~30 s with IDLE=10
#   IDLE=60 CONNS="1 50" DURATION=8 bash tests/bench/cpu_per_request.sh build
#   BULK_MIB=1024 CONNS="" IDLE=1 bash tests/bench/cpu_per_request.sh build
#
# Starts grok-demo-upstream (GET / -> 30 bytes), grok-server (default logging:
# an access line per request) and `grok http` (console on) on 127.0.0.1 with
# free ports; for each wrk connection count in CONNS runs wrk for DURATION
# seconds and reports requests/s and CPU microseconds per request of each
# process (utime + stime from /proc, 10 ms ticks); then leaves the tunnel
# idle for IDLE seconds and reports each process's CPU in % of one core.
# BULK_MIB (0 = off) downloads that many MiB through the tunnel with curl
# (GET /download) and reports MB/s and CPU milliseconds per MiB of each;
# BULK_UP=1 uploads them instead (PUT /upload with a Content-Length; the
# local service hashes what it gets, which bounds MB/s: compare CPU per MiB).
# GROK_SERVER_CONF_EXTRA is appended to the tunnels: section (e.g.
# "  grpc_poll_threads: 1"); GROK_SERVER_LOG_LEVEL (info) sets logging.level.
# Stops everything it started, by PID.
set -euo pipefail
bin=$(cd "${1:-build}" && pwd)
CONNS=${CONNS-"1 50"}
DURATION=${DURATION:-8}
IDLE=${IDLE:-10}
command -v wrk >/dev/null || { echo "cpu_per_request: needs wrk (apt-get install wrk)" >&2; exit 2; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up=$(free_port); pub=$(free_port); ctl=$(free_port)
"$bin/grok-demo-upstream" --port "$up" >"$work/upstream.log" 2>&1 & pids+=($!)
cat >"$work/server.yaml" <<YAML
server:
  domain: tunnel.test
  bind_address: 127.0.0.1
  http_port: $pub
  grpc_address: 127.0.0.1
  grpc_port: $ctl
  api_port: 0
tunnels:
  tcp_port_start: 0
${GROK_SERVER_CONF_EXTRA:-}
auth:
  tokens: [cpu-bench-token]
logging:
  level: ${GROK_SERVER_LOG_LEVEL:-info}
YAML
"$bin/grok-server" --config "$work/server.yaml" >"$work/server.log" 2>&1 & server=$!; pids+=($server)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$ctl") 2>/dev/null && break; sleep 0.1; done
"$bin/grok" --insecure --config /dev/null http "127.0.0.1:$up" --subdomain bench --server "127.0.0.1:$ctl" \
  --token cpu-bench-token >"$work/client.log" 2>&1 & client=$!; pids+=($client)
for _ in $(seq 100); do
  [ "$(curl -s -H 'Host: bench.tunnel.test' "http://127.0.0.1:$pub/" 2>/dev/null)" = "Hello from grok-demo-upstream" ] && break
  sleep 0.1
done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
printf '%-10s %10s %14s %14s\n' conns "req/s" "server us/req" "client us/req"
for c in $CONNS; do
  s0=$(ticks "$server"); c0=$(ticks "$client")
  out=$(wrk -t1 -c"$c" -d"${DURATION}s" -H 'Host: bench.tunnel.test' "http://127.0.0.1:$pub/")
  s1=$(ticks "$server"); c1=$(ticks "$client")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  awk -v c="$c" -v r="$reqs" -v rps="$rps" -v ds=$((s1 - s0)) -v dc=$((c1 - c0)) -v hz="$hz" 'BEGIN {
    printf "c=%-8s %10.0f %14.1f %14.1f\n", c, rps, ds / hz * 1e6 / r, dc / hz * 1e6 / r }'
done
if [ "${BULK_MIB:-0}" -gt 0 ]; then
  s0=$(ticks "$server"); c0=$(ticks "$client")
  if [ "${BULK_UP:-0}" = 1 ]; then
    # A sparse file of zeros, sent with its Content-Length; the local service answers "BYTES SHA256".
    truncate -s $((BULK_MIB * 1048576)) "$work/upload.in"
    read -r secs < <(curl -s -o "$work/upload.out" -m 300 -T "$work/upload.in" -H 'Host: bench.tunnel.test' \
      -w '%{time_total}\n' "http://127.0.0.1:$pub/upload")
    size=$(cut -d' ' -f1 "$work/upload.out")
  else
    read -r size secs < <(curl -s -o /dev/null -m 300 -H 'Host: bench.tunnel.test' -w '%{size_download} %{time_total}\n' \
      "http://127.0.0.1:$pub/download?size=$((BULK_MIB * 1048576))")
  fi
  s1=$(ticks "$server"); c1=$(ticks "$client")
  [ "$size" = "$((BULK_MIB * 1048576))" ] || { echo "cpu_per_request: $size bytes moved, not $((BULK_MIB * 1048576))" >&2; exit 1; }
  awk -v m="$BULK_MIB" -v sz="$size" -v t="$secs" -v ds=$((s1 - s0)) -v dc=$((c1 - c0)) -v hz="$hz" 'BEGIN {
    printf "%-10s %10.0f MB/s, server %.2f ms/MiB, client %.2f ms/MiB\n", m "MiB", sz / t / 1e6, ds / hz * 1e3 / m, dc / hz * 1e3 / m }'
fi
sleep 1
s0=$(ticks "$server"); c0=$(ticks "$client")
sleep "$IDLE"
s1=$(ticks "$server"); c1=$(ticks "$client")
awk -v ds=$((s1 - s0)) -v dc=$((c1 - c0)) -v hz="$hz" -v t="$IDLE" 'BEGIN {
  printf "idle %ss: server %.2f %% of a core, client %.2f %%\n", t, ds / hz / t * 100, dc / hz / t * 100 }'
