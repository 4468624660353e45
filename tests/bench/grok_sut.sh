#!/usr/bin/env bash
# grok as the system under test of ../shared/bench/run_peers.sh (its header gives the interface):
#   run_peers.sh -p nginx -s "grok=bash $PWD/tests/bench/grok_sut.sh $PWD/build"
# Arguments after BUILD_DIR go to `grok http`, e.g. the inspector on and off in one run:
#   -s "grok=bash $PWD/tests/bench/grok_sut.sh $PWD/build" \
#   -s "grok-noinspect=bash $PWD/tests/bench/grok_sut.sh $PWD/build --no-inspect"
# Starts grok-server (public HTTP on $PUBLIC_PORT, tunnel port $CONTROL_PORT, domain $TUNNEL_DOMAIN,
# default logging: an access line per request, as users run it) and `grok http $BACKEND_PORT -s
# $TUNNEL_SUBDOMAIN` with its console on, and stays in the foreground. WORKERS (env) sets the
# server's worker_pool_size (default 0 = auto), POLLERS its grpc_poll_threads (default 2),
# TUNNELS_EXTRA (env) more lines of its tunnels: section (e.g. "  max_window: 512KiB"). MEMBERS (env, default 1) starts that many
# clients with --pool, so the name is served by a pool. Two builds side by side: two -s with two
# BIN dirs.
set -euo pipefail
bin=${1:?usage: grok_sut.sh BUILD_DIR [GROK_HTTP_FLAGS...]}
shift
: "${PUBLIC_PORT:?} ${CONTROL_PORT:?} ${BACKEND_PORT:?} ${SUT_WORKDIR:?}"
token=bench-$RANDOM$RANDOM
cat >"$SUT_WORKDIR/grok-server.yaml" <<YAML
server:
  domain: ${TUNNEL_DOMAIN:-tunnel.test}
  bind_address: 127.0.0.1
  http_port: $PUBLIC_PORT
  grpc_address: 127.0.0.1
  grpc_port: $CONTROL_PORT
  api_port: 0
tunnels:
  tcp_port_start: 0
  worker_pool_size: ${WORKERS:-0}
  grpc_poll_threads: ${POLLERS:-2}
${TUNNELS_EXTRA:-}
auth:
  tokens: [$token]
YAML
"$bin/grok-server" --config "$SUT_WORKDIR/grok-server.yaml" >"$SUT_WORKDIR/server.log" 2>&1 &
echo $! >"$SUT_WORKDIR/server.pid"
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$CONTROL_PORT") 2>/dev/null && break
  sleep 0.1
done
members=${MEMBERS:-1}
pool=()
[ "$members" -gt 1 ] && pool=(--pool)
for i in $(seq "$members"); do
  "$bin/grok" --insecure --config /dev/null http "127.0.0.1:$BACKEND_PORT" \
    --subdomain "${TUNNEL_SUBDOMAIN:-bench}" --server "127.0.0.1:$CONTROL_PORT" --token "$token" "${pool[@]}" "$@" \
    >"$SUT_WORKDIR/client$i.log" 2>&1 &
  [ "$i" -eq 1 ] && echo $! >"$SUT_WORKDIR/client.pid"
done
wait
