#!/usr/bin/env bash
# What TLS to the local service costs: wrk /small through grok to one nginx, once as `grok http
# http://127.0.0.1:PORT` and once as `grok http https://localhost:PORT --upstream-insecure` (a self-signed
# P-256 certificate made with openssl), ROUNDS alternating rounds at c=50, then c=1.
#
#   bash tests/bench/upstream_tls.sh                 # 3 rounds of 10 s, about 2 minutes
#   DURATION=5s ROUNDS=1 bash tests/bench/upstream_tls.sh
#
# Everything runs on 127.0.0.1 and stops on its own; only processes this script started are stopped, by PID.
# Needs wrk, nginx (nginx-light) and openssl (e2e.sh installs the first two). Prints one line per run; the
# load generator, nginx, grok-server and both grok clients share the machine's cores, so compare the two
# columns of one run, not runs on different days.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-$root/build}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for b in grok-server grok; do [ -x "$BUILD/$b" ] || { echo "upstream_tls: $BUILD/$b is missing" >&2; exit 1; }; done
for t in wrk openssl curl "$NGINX"; do command -v "$t" >/dev/null || { echo "upstream_tls: $t is missing" >&2; exit 1; }; done

work=$(mktemp -d /tmp/grok-upstream-tls.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() {  # FILE TEXT: up to 15 s
  for _ in $(seq 150); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "upstream_tls: timed out waiting for '$2' in $1:" >&2; cat "$1" >&2; exit 1
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost -days 1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
plain=$(free_port); tls=$(free_port); http_port=$(free_port); grpc_port=$(free_port)
mkdir -p "$work/nginx/logs"
cat >"$work/nginx.conf" <<EOF
worker_processes 1;
error_log $work/nginx/logs/error.log;
pid $work/nginx/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 100000;
  server {
    listen 127.0.0.1:$plain;
    listen 127.0.0.1:$tls ssl;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    location = /small { return 200 "hello, world"; }
  }
}
EOF
"$NGINX" -p "$work/nginx" -c "$work/nginx.conf" -g 'daemon off;' &
pids+=($!)
cat >"$work/server.yaml" <<EOF
server:
  domain: localhost
  bind_address: 127.0.0.1
  http_port: $http_port
  grpc_address: 127.0.0.1
  grpc_port: $grpc_port
auth:
  tokens: [bench-token]
logging:
  level: warn
EOF
"$BUILD/grok-server" --config "$work/server.yaml" >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 150); do curl -s -o /dev/null "http://127.0.0.1:$http_port/" && break; sleep 0.1; done
client() {  # NAME ADDRESS FLAGS...
  local name=$1 address=$2; shift 2
  "$BUILD/grok" --insecure --config /dev/null http "$address" "$@" --subdomain "$name" \
    --server "127.0.0.1:$grpc_port" --token bench-token --log-level warn --no-inspect >"$work/$name.log" 2>&1 &
  pids+=($!)
}
client plain "http://127.0.0.1:$plain"
client tls "https://localhost:$tls" --upstream-insecure
wait_for "$work/plain.log" Forwarding
wait_for "$work/tls.log" Forwarding
for name in plain tls; do
  body=$(curl -s -H "Host: $name.localhost" "http://127.0.0.1:$http_port/small")
  [ "$body" = "hello, world" ] || { echo "upstream_tls: $name answered '$body'" >&2; exit 1; }
done

run() {  # NAME CONNS THREADS: one wrk run, one line
  local out="$work/wrk.txt"
  wrk -t "$3" -c "$2" -d "$DURATION" --timeout 5s --latency -H "Host: $1.localhost" \
    "http://127.0.0.1:$http_port/small" >"$out" 2>&1
  printf '%-6s c=%-3s %10s req/s  p50 %-9s p99 %-9s %s\n' "$1" "$2" "$(awk '/Requests\/sec/ {print $2}' "$out")" \
    "$(awk '$1 == "50%" {print $2}' "$out")" "$(awk '$1 == "99%" {print $2}' "$out")" \
    "$(grep -E 'Non-2xx|Socket errors' "$out" | tr '\n' ' ')"
}
for _ in $(seq "$ROUNDS"); do
  run plain 50 2
  run tls 50 2
done
run plain 1 1
run tls 1 1
