#!/usr/bin/env bash
# A tunnel held on node B of a two-node cluster, reached through node B
# directly and relayed through node A, in the same run (README, "Several
# nodes"):
#
#   bash tests/bench/cluster_relay.sh [BUILD_DIR]          # ~1 minute
#   ROUNDS=3 DURATION=8 SIZE_MIB=1024 bash tests/bench/cluster_relay.sh build
#
# Starts a one-member etcd (Debian's etcd-server), two grok-server nodes,
# grok-demo-upstream and `grok http` connected to node B, all on 127.0.0.1
# with free ports. Each round runs wrk -c 50 for DURATION seconds against
# each node and downloads SIZE_MIB MiB through each with curl, alternating
# which node goes first. Prints each figure, the medians and the ratios
# relayed / direct. Stops everything it started, by PID.
set -euo pipefail
bin=$(cd "${1:-build}" && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
SIZE_MIB=${SIZE_MIB:-1024}
for tool in wrk curl etcd python3; do
  command -v "$tool" >/dev/null || { echo "cluster_relay: needs $tool (apt-get install wrk curl etcd-server python3)" >&2; exit 2; }
done
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() {  # FILE TEXT SECONDS
  for _ in $(seq $(($3 * 20))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "cluster_relay: '$2' did not appear in $1" >&2; cat "$1" >&2; exit 1
}
ec=$(free_port); ep=$(free_port)
etcd --name m0 --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$ec" \
  --advertise-client-urls "http://127.0.0.1:$ec" --listen-peer-urls "http://127.0.0.1:$ep" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ep" --initial-cluster "m0=http://127.0.0.1:$ep" \
  >"$work/etcd.log" 2>&1 & pids+=($!)
wait_for "$work/etcd.log" "ready to serve client requests" 20
up=$(free_port)
"$bin/grok-demo-upstream" --port "$up" >"$work/upstream.log" 2>&1 & pids+=($!)
declare -A pub grpc
for n in a b; do
  pub[$n]=$(free_port); grpc[$n]=$(free_port)
  cat >"$work/$n.yaml" <<YAML
server:
  domain: tunnel.test
  bind_address: 127.0.0.1
  http_port: ${pub[$n]}
  grpc_address: 127.0.0.1
  grpc_port: ${grpc[$n]}
tunnels:
  tcp_port_start: 0
auth:
  tokens: [bench-token]
cluster:
  etcd_endpoints: [127.0.0.1:$ec]
  node_id: node-$n
  advertise: 127.0.0.1:${grpc[$n]}
  secret: bench-cluster-secret
YAML
  "$bin/grok-server" --config "$work/$n.yaml" >"$work/$n.log" 2>&1 & pids+=($!)
  wait_for "$work/$n.log" "is in the cluster" 20
done
"$bin/grok" --insecure --config /dev/null http "$up" --subdomain bench --server "127.0.0.1:${grpc[b]}" \
  --token bench-token --no-inspect >"$work/client.log" 2>&1 & pids+=($!)
wait_for "$work/client.log" "Forwarding" 20
for _ in $(seq 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: bench.tunnel.test' "http://127.0.0.1:${pub[a]}/")" = 200 ] && break
  sleep 0.05
done

declare -A rps mbs
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
measure() {  # NODE
  local port=${pub[$1]} r t
  r=$(wrk -t 2 -c 50 -d "${DURATION}s" -H 'Host: bench.tunnel.test' "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}')
  t=$(curl -s -o /dev/null -w '%{time_total}' -H 'Host: bench.tunnel.test' \
        "http://127.0.0.1:$port/download?size=$((SIZE_MIB << 20))")
  rps[$1]+="$r "
  mbs[$1]+="$(python3 -c "print(f'{$SIZE_MIB*1.048576/$t:.1f}')") "
  printf '  node %s: %s req/s (c=50), %s MB/s (%s MiB)\n' "$1" "$r" "$(echo "${mbs[$1]}" | awk '{print $NF}')" "$SIZE_MIB"
}
echo "cluster_relay: tunnel on node b; node a relays (rounds=$ROUNDS, ${DURATION}s each)"
for round in $(seq "$ROUNDS"); do
  echo "round $round"
  if ((round % 2)); then measure b; measure a; else measure a; measure b; fi
done
rb=$(median ${rps[b]}); ra=$(median ${rps[a]}); mb=$(median ${mbs[b]}); ma=$(median ${mbs[a]})
echo "direct  (node b): $rb req/s, $mb MB/s"
echo "relayed (node a): $ra req/s, $ma MB/s"
python3 -c "print(f'relayed/direct: requests {$ra/$rb:.2f}x, bytes {$ma/$mb:.2f}x')"
