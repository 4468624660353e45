#!/usr/bin/env bash
# Scale benchmark: how much memory does grok-server spend per idle tunnel and per idle public connection,
# how fast does it register tunnels, and does a real tunnel still answer meanwhile?
#
#   bash tests/bench/scale.sh        # 1 000 and 10 000 tunnels (4 and 1 per connection), 10 000 idle connections
#   STEPS="tunnels:1000:4 idle:2000" bash tests/bench/scale.sh   # pick steps
#
# Each step starts a fresh grok-server (plaintext gRPC, logging.level info, read_header_timeout and
# idle_timeout 5m) on 127.0.0.1 with OS-chosen ports, grok-demo-upstream behind a real `grok http` client
# named "probe", and checks one probe request through that tunnel. Then build/tests/bench/grok_bench_scale either
#   tunnels:N:K  opens N tunnels speaking tunnel.proto like grok (Hello with token and name, then idle,
#                answering nothing), K tunnels per gRPC channel, each channel its own TCP connection;
#   idle:N       opens N TCP connections to the public HTTP port and sends nothing.
# Once all are up the script waits for grok-server's RSS to settle, records it, sends the probe again
# (must be 200), checks that every tunnel/connection is still open, and stops everything it started.
#
# Output: RESULTS/scale-DATE.md (RESULTS defaults to /tmp/grok-bench-results). Every wait is bounded; the whole
# run takes 1-3 minutes. Needs root (or a high hard limit) for RLIMIT_NOFILE; only loopback traffic.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-$root/build}
RESULTS=${RESULTS:-/tmp/grok-bench-results}
STEPS=${STEPS:-"tunnels:1000:4 tunnels:10000:4 tunnels:1000:1 tunnels:10000:1 idle:10000"}
HEAPTRACK=${HEAPTRACK:-}   # a step (e.g. tunnels:1000:4) to run grok-server under heaptrack: /tmp/grok-heaptrack-STEP.*
TOKEN=bench-token

log() { echo "scale: $*" >&2; }
die() { echo "scale: error: $*" >&2; exit 1; }

for b in grok-server grok grok-demo-upstream tests/bench/grok_bench_scale; do
  [ -x "$BUILD/$b" ] || die "$BUILD/$b is missing (build it: cmake --build build --target $b)"
done
command -v curl >/dev/null || die "curl is needed"
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
log "RLIMIT_NOFILE $(ulimit -n)"

work=$(mktemp -d /tmp/grok-scale.XXXXXX)
mkdir -p "$work/bin" "$RESULTS"
cp "$BUILD/grok-server" "$BUILD/grok" "$BUILD/grok-demo-upstream" "$BUILD/tests/bench/grok_bench_scale" "$work/bin/"
BIN=$work/bin
declare -A pid=()   # role -> PID of every process this script started
cleanup() {
  exec 3>&- 2>/dev/null || true
  local r
  for r in load client upstream server_child server; do
    [ -n "${pid[$r]:-}" ] && kill "${pid[$r]}" 2>/dev/null || true
  done
  for r in load client upstream server_child server; do
    [ -n "${pid[$r]:-}" ] && wait "${pid[$r]}" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

alive() { [ -n "${pid[$1]:-}" ] && kill -0 "${pid[$1]}" 2>/dev/null; }
stop() {  # ROLE [SIGNAL]
  local p=${pid[$1]:-}
  [ -n "$p" ] || return 0
  kill "-${2:-TERM}" "$p" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  unset "pid[$1]"
}
wait_for() {  # FILE REGEX SECONDS [ROLE]: prints the first match of REGEX in FILE
  local m i
  for ((i = 0; i < $3 * 10; i++)); do
    if m=$(grep -aoE "$2" "$1" 2>/dev/null | head -n1) && [ -n "$m" ]; then echo "$m"; return 0; fi
    if [ -n "${4:-}" ] && ! alive "$4"; then break; fi
    sleep 0.1
  done
  log "timed out waiting for '$2' in $1:"; tail -n 20 "$1" >&2; return 1
}
descendant_running() {  # PID EXE: the PID of a descendant of PID running EXE
  local p c
  local -a todo=("$1")
  while ((${#todo[@]})); do
    p=${todo[0]}; todo=("${todo[@]:1}")
    for c in $(pgrep -P "$p" || true); do
      [ "$(readlink "/proc/$c/exe" 2>/dev/null)" = "$2" ] && { echo "$c"; return 0; }
      todo+=("$c")
    done
  done
  return 1
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
threads_of() { awk '/^Threads:/ {print $2}' "/proc/$1/status"; }
fds_of() { ls "/proc/$1/fd" | wc -l; }
settled_rss() {  # PID: RSS once two readings 1 s apart differ by < 0.5 % (at most 20 s)
  local a b i
  a=$(rss_kib "$1")
  for ((i = 0; i < 20; i++)); do
    sleep 1
    b=$(rss_kib "$1")
    if (( (a > b ? a - b : b - a) * 200 < b )); then echo "$b"; return 0; fi
    a=$b
  done
  echo "$b"
}
probe() {  # prints "STATUS SECONDS" of one request through the probe tunnel
  curl -sS -m 10 -o /dev/null -w '%{http_code} %{time_total}' -H "Host: probe.localhost" \
    "http://127.0.0.1:$HTTP_PORT/" 2>/dev/null || echo "000 -"
}

# server.max_connections_per_ip is newer than some servers: use it only where the config accepts it.
per_ip_line="  max_connections_per_ip: 0"
write_config() {
  cat >"$work/grok-server.yaml" <<YAML
server:
  domain: localhost
  bind_address: 127.0.0.1
  http_port: 0
  grpc_address: 127.0.0.1
  grpc_port: 0
  read_header_timeout: 5m
  idle_timeout: 5m
$per_ip_line
tunnels:
  name_grace: 0s
auth:
  tokens: [$TOKEN]
logging:
  level: info
YAML
}
write_config
if ! out=$("$BIN/grok-server" --config "$work/grok-server.yaml" --check-config 2>&1) &&
   grep -qi "max_connections_per_ip" <<<"$out"; then
  per_ip_line=""
  per_ip_note="server.max_connections_per_ip is not known to this grok-server (left out)"
  write_config
else
  per_ip_note="server.max_connections_per_ip: 0"
fi
log "$per_ip_note"

start_stack() {  # STEP: fresh grok-server (+heaptrack for that step), upstream and the probe tunnel
  : >"$work/server.log"
  if [ "$HEAPTRACK" = "$1" ]; then
    command -v heaptrack >/dev/null || die "heaptrack is not installed (apt-get install heaptrack)"
    heaptrack -o "/tmp/grok-heaptrack-${1//:/-}" "$BIN/grok-server" --config "$work/grok-server.yaml" >"$work/server.log" 2>&1 &
  else
    "$BIN/grok-server" --config "$work/grok-server.yaml" >"$work/server.log" 2>&1 &
  fi
  pid[server]=$!
  local m
  m=$(wait_for "$work/server.log" 'ready: http=127\.0\.0\.1:[0-9]+ grpc=127\.0\.0\.1:[0-9]+' 60) || die "grok-server did not start"
  HTTP_PORT=$(sed -E 's/.*http=127\.0\.0\.1:([0-9]+).*/\1/' <<<"$m")
  GRPC_PORT=$(sed -E 's/.*grpc=127\.0\.0\.1:([0-9]+).*/\1/' <<<"$m")
  SERVER_PID=${pid[server]}
  if [ "$HEAPTRACK" = "$1" ]; then  # heaptrack runs the server as its child
    SERVER_PID=$(descendant_running "${pid[server]}" "$BIN/grok-server") || die "grok-server under heaptrack not found"
    pid[server_child]=$SERVER_PID
  fi
  : >"$work/upstream.log"
  "$BIN/grok-demo-upstream" --port 0 >"$work/upstream.log" 2>&1 &
  pid[upstream]=$!
  m=$(wait_for "$work/upstream.log" 'listening 127\.0\.0\.1:[0-9]+' 15 upstream) || die "grok-demo-upstream did not start"
  local up_port=${m##*:}
  : >"$work/client.log"
  "$BIN/grok" --insecure --config /dev/null http "$up_port" --subdomain probe \
    --server "127.0.0.1:$GRPC_PORT" --token "$TOKEN" --log-level warn >"$work/client.log" 2>&1 &
  pid[client]=$!
  wait_for "$work/client.log" 'Forwarding' 15 client >/dev/null || die "grok (probe tunnel) did not come online"
}
stop_stack() {
  stop client INT
  stop upstream
  stop server_child TERM   # grok-server itself when heaptrack wraps it
  stop server TERM
}

rows=()
fail=0
t_start=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for step in $STEPS; do
  IFS=: read -r kind count per <<<"$step"
  log "step $step"
  start_stack "$step"
  p0=$(probe)
  [ "${p0%% *}" = 200 ] || { log "probe before the load answered $p0"; fail=1; }
  rss0=$(settled_rss "$SERVER_PID")
  thr0=$(threads_of "$SERVER_PID"); fd0=$(fds_of "$SERVER_PID")

  rm -f "$work/hold"; mkfifo "$work/hold"
  : >"$work/load.out"
  if [ "$kind" = tunnels ]; then
    "$BIN/grok_bench_scale" tunnels --server "127.0.0.1:$GRPC_PORT" --token "$TOKEN" --count "$count" \
      --per-channel "$per" --prefix "s$count-$per" --timeout 240 --hold 600 \
      <"$work/hold" >"$work/load.out" 2>"$work/load.err" &
  else
    "$BIN/grok_bench_scale" idle --connect "127.0.0.1:$HTTP_PORT" --count "$count" --timeout 120 --hold 600 \
      <"$work/hold" >"$work/load.out" 2>"$work/load.err" &
  fi
  pid[load]=$!
  exec 3<>"$work/hold"   # the load holds until this closes (read-write: opening never blocks)
  if ! ready=$(wait_for "$work/load.out" '(READY|FAILED).*' 300 load) || [[ $ready == FAILED* ]]; then
    log "load failed: ${ready:-no answer}"; cat "$work/load.err" >&2 || true
    rows+=("| $step | failed: ${ready:-no answer} | | | | | | | |")
    fail=1; exec 3>&-; stop load; stop_stack; continue
  fi
  rss1=$(settled_rss "$SERVER_PID")
  thr1=$(threads_of "$SERVER_PID"); fd1=$(fds_of "$SERVER_PID")
  p1=$(probe)
  [ "${p1%% *}" = 200 ] || { log "probe under load answered $p1"; fail=1; }
  exec 3>&-
  end=$(wait_for "$work/load.out" 'END.*' 60 load || echo "END ?")
  stop load
  stop_stack
  open=$(sed -E 's/.*still_open=([0-9]+).*/\1/' <<<"$end")
  per_kib=$(awk -v a="$rss0" -v b="$rss1" -v n="$count" 'BEGIN {printf "%.1f", (b - a) / n}')
  if [ "$kind" = tunnels ]; then
    wall=$(sed -E 's/.*register_wall_s=([0-9.]+).*/\1/' <<<"$ready")
    rate=$(sed -E 's/.*tunnels_per_s=([0-9]+).*/\1/' <<<"$ready")
    channels=$(sed -E 's/.*channels=([0-9]+).*/\1/' <<<"$ready")
    what="$count idle tunnels, $per per gRPC connection ($channels connections)"
    reg="$wall s ($rate tunnels/s)"
  else
    what="$count idle public HTTP connections"
    reg="$(sed -E 's/.*open_wall_s=([0-9.]+).*/\1/' <<<"$ready") s to open"
  fi
  rows+=("| $what | $((rss0 / 1024)) → $((rss1 / 1024)) MiB | **$per_kib** | $reg | $open / $count | $thr0 → $thr1 | $fd0 → $fd1 | ${p0% *} → ${p1% *} (${p1#* } s) |")
  log "$step: RSS $rss0 -> $rss1 KiB = $per_kib KiB each; still open $open/$count; probe $p0 -> $p1"
  [ "$open" = "$count" ] || fail=1
done
took=$(( $(date +%s) - t_start ))
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

stamp=$(date -u +%Y%m%d-%H%M%S)
md=$RESULTS/scale-$stamp.md
{
  echo "# grok scale benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "| machine | |"
  echo "|---|---|"
  echo "| nproc / memory | $(nproc) / $(free -g | awk '/^Mem:/ {print $2}') GiB |"
  echo "| CPU | $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') |"
  echo "| kernel | $(uname -sr) |"
  echo "| load average at start → end | $load_start → $load_end |"
  echo "| grok | $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown), binaries built $(date -u -r "$BUILD/grok-server" '+%Y-%m-%d %H:%M UTC'); plaintext gRPC on loopback; worker pool auto |"
  echo "| settings | STEPS=\"$STEPS\"; $per_ip_note; read_header_timeout 5m; RLIMIT_NOFILE $(ulimit -n); ran ${took}s |"
  echo
  echo "grok-server RSS is VmRSS from /proc, read once it is steady (two readings 1 s apart within 0.5 %), before the"
  echo "load (server + the probe tunnel) and with all of it connected; per item = difference / count. The probe is one"
  echo "GET through a real grok client and grok-demo-upstream, before → during the load. Target: ≤ 100 KiB per"
  echo "connected idle tunnel at 10 000 tunnels."
  echo
  echo "| load | grok-server RSS | KiB per item | time to register | still open at the end | server threads | server fds | probe status |"
  echo "|---|---:|---:|---|---:|---:|---:|---|"
  printf '%s\n' "${rows[@]}"
} >"$md"
cat "$md"
log "wrote $md (${took}s)"
exit "$fail"
