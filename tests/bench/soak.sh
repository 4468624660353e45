#!/usr/bin/env bash
# Soak test (not part of ctest): grok-server, grok-demo-upstream and grok on
# 127.0.0.1 with OS-chosen ports, mixed load for GROK_SOAK_SECONDS (default
# 600): small GETs, POST echoes and uploads with body and sha-256 checks,
# downloads with sha-256 checks, SSE, WebSocket echoes, and public-client
# disconnects injected on purpose (after the request, mid-response,
# mid-upload; counted apart, never errors). RSS and open fds of grok-server and
# grok are sampled every GROK_SOAK_SAMPLE_SECONDS (default 5) into a CSV.
#
# Usage: tests/bench/soak.sh [BUILD_DIR]    (default build/; builds nothing)
# Environment: GROK_SOAK_SECONDS, GROK_SOAK_THREADS (8), GROK_SOAK_SAMPLE_SECONDS,
#   GROK_SOAK_OUT (folder for soak-DATE.csv and the last run's logs; default
#   BUILD_DIR/soak).
# Exit status: 0 when every request was answered correctly, nothing was left in
# flight, no process died and RSS/fds did not grow; non-zero otherwise.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
seconds=${GROK_SOAK_SECONDS:-600}
threads=${GROK_SOAK_THREADS:-8}
sample=${GROK_SOAK_SAMPLE_SECONDS:-5}

for b in grok-server grok grok-demo-upstream; do
  [ -x "$build/$b" ] || { echo "soak: $build/$b not found (build it first, or pass the build folder)" >&2; exit 2; }
done
command -v python3 >/dev/null || { echo "soak: python3 is needed (.ci/setup installs it)" >&2; exit 2; }

out=${GROK_SOAK_OUT:-$build/soak}
mkdir -p "$out"
stamp=$(date +%Y%m%d-%H%M%S)
csv=$out/soak-$stamp.csv
pids=()
cleanup() {
  # Client first, then server, then the app: each by the PID this script started.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() {  # FILE REGEX: prints the first match of REGEX in FILE, waiting up to 15 s
  for _ in $(seq 150); do
    if m=$(grep -oE "$2" "$1" 2>/dev/null | head -n1) && [ -n "$m" ]; then echo "$m"; return 0; fi
    sleep 0.1
  done
  echo "soak: timed out waiting for '$2' in $1" >&2
  cat "$1" >&2
  return 1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

api_port=$(free_port)
cat >"$out/grok-server.yaml" <<YAML
server:
  domain: localhost
  bind_address: 127.0.0.1
  http_port: 0
  grpc_address: 127.0.0.1
  grpc_port: 0
  api_port: $api_port
auth:
  tokens: [soak-token]
logging:
  level: info
YAML

"$build/grok-demo-upstream" --port 0 >"$out/upstream.log" 2>&1 &
pids+=($!)
app=$(wait_for "$out/upstream.log" 'listening 127\.0\.0\.1:[0-9]+' | sed 's/.*://')
"$build/grok-server" --config "$out/grok-server.yaml" >"$out/server.log" 2>&1 &
pids+=($!)
server_pid=$!
ready=$(wait_for "$out/server.log" 'http=127\.0\.0\.1:[0-9]+ grpc=127\.0\.0\.1:[0-9]+')
http_port=$(sed -E 's/http=127\.0\.0\.1:([0-9]+).*/\1/' <<<"$ready")
grpc_port=$(sed -E 's/.*grpc=127\.0\.0\.1:([0-9]+)/\1/' <<<"$ready")
"$build/grok" --insecure --config /dev/null http "$app" --subdomain soak --server "127.0.0.1:$grpc_port" \
  --token soak-token --log-level warn >"$out/client.log" 2>&1 &
pids+=($!)
client_pid=$!
wait_for "$out/client.log" 'http://soak\.localhost:[0-9]+' >/dev/null

echo "soak: ${seconds} s, ${threads} threads; grok-server pid $server_pid (http $http_port, api $api_port)," \
  "grok pid $client_pid, local service :$app; samples every ${sample} s into $csv"
set +e
python3 "$root/tests/bench/soak.py" --http-port "$http_port" --api-port "$api_port" --host soak.localhost \
  --server-pid "$server_pid" --client-pid "$client_pid" --seconds "$seconds" --threads "$threads" \
  --sample-seconds "$sample" --csv "$csv"
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
  for f in server client upstream; do
    echo "---- last lines of $out/$f.log"
    tail -n 20 "$out/$f.log"
  done
fi
exit "$rc"
