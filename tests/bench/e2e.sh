#!/usr/bin/env bash
# End-to-end benchmark: does adding workers make grok faster?
#
#   bash tests/bench/e2e.sh                      # defaults, under ~4 minutes
#   DURATION=2s BIG=64MiB bash tests/bench/e2e.sh   # quick run
#
# Everything runs on 127.0.0.1 with OS-free ports and stops on its own:
#   - Debian's nginx (1 worker) as the local service: /small (13-byte body) and /files/ (a random file),
#     plus a second server block that is one nginx proxy_pass hop in front of it (the "one-hop proxy"
#     reference: HTTP/1.1 upstream with keepalive 64, as a reverse proxy is normally set up), and a
#     third that proxies to the one-hop proxy (the "two-hop" chain: two relays, as grok-server and grok
#     are; shown for /small as context, the targets compare with one hop);
#   - grok-server (logging.level warn) and `grok http NGINX_PORT`;
#   - grok-demo-upstream as the local service of the upload case (its /upload reads and hashes the body).
# wrk (each run -d DURATION, 1 or 2 threads, --latency) measures /small at c=1, 50, 200 against nginx
# direct, the one-hop proxy and grok; then grok-server is restarted with GROK_WORKER_POOL_SIZE=1,2,4,8 and
# the c=50 case is run for each (with CPU seconds per 100 000 requests and peak RSS of grok-server and
# grok). curl measures a BIG download and upload through each path.
#
# Output: RESULTS/e2e-DATE.md (machine, every figure, grok / one-hop ratios) and RESULTS/e2e-DATE.png
# (req/s by worker count at c=50 with the one-hop and direct references); the table is also printed.
# RESULTS defaults to /tmp/grok-bench-results. Installs wrk, nginx-light and gnuplot-nox with apt-get if
# missing (root or sudo); downloads nothing else.
#
# Caveat a reader should keep in mind: the load generator (wrk/curl), nginx, grok-server and grok all
# share this machine's cores, so figures are relative (grok vs the one-hop proxy on the same machine in
# the same run), not absolute capacity.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
DURATION=${DURATION:-5s}
BIG=${BIG:-1GiB}
RESULTS=${RESULTS:-/tmp/grok-bench-results}
WORKERS=${WORKERS:-"1 2 4 8"}
BUILD=${BUILD:-$root/build}
NAME=bench
TOKEN=bench-token

log() { echo "e2e: $*" >&2; }
die() { echo "e2e: error: $*" >&2; exit 1; }

for b in grok-server grok grok-demo-upstream; do
  [ -x "$BUILD/$b" ] || die "$BUILD/$b is missing (build first: ninja -C build)"
done

# ---------------------------------------------------------------------------------------------- tools
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v gnuplot >/dev/null || need+=(gnuplot-nox)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  log "installing ${need[*]} with apt-get"
  # Debian's nginx package starts a system nginx on :80 where invoke-rc.d allows it; this script never
  # uses that one (it runs its own from a temp dir), it just installs the binary.
  $sudo apt-get update -qq >&2
  if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >&2; then
    [[ " ${need[*]} " == *" nginx-light "* ]] || die "apt-get install ${need[*]} failed"
    need=("${need[@]/nginx-light/nginx}")
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >&2 || die "apt-get install failed"
  fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# ------------------------------------------------------------------------------------ process control
work=$(mktemp -d /tmp/grok-e2e.XXXXXX)
chmod 755 "$work"            # nginx workers run as nobody and read $work/files
declare -A pid=()            # role -> PID, every process this script started
cleanup() {
  local r
  for r in client up_client server demo nginx; do
    if [ -n "${pid[$r]:-}" ]; then kill "${pid[$r]}" 2>/dev/null || true; fi
  done
  for r in client up_client server demo nginx; do
    if [ -n "${pid[$r]:-}" ]; then wait "${pid[$r]}" 2>/dev/null || true; fi
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Run copies of the binaries, so that a rebuild in the tree meanwhile cannot swap them mid-run.
mkdir -p "$work/bin"
# Briefly under the build lock the project's engineers use (`flock /tmp/grok-build.lock ninja`); a lock held
# for long (e.g. a whole .ci/run) is not waited for: the copies are then checked instead, i.e. unchanged
# sources during the copy and binaries that start.
copy_bins() { cp "$BUILD/grok-server" "$BUILD/grok" "$BUILD/grok-demo-upstream" "$work/bin/"; }
stamp_bins() { stat -c '%Y %s' "$BUILD/grok-server" "$BUILD/grok" "$BUILD/grok-demo-upstream"; }
if ! flock -w 10 /tmp/grok-build.lock cp "$BUILD/grok-server" "$BUILD/grok" "$BUILD/grok-demo-upstream" "$work/bin/"; then
  log "build lock busy; copying the binaries without it"
  for _ in 1 2 3 4 5; do
    before=$(stamp_bins); copy_bins; after=$(stamp_bins)
    if [ "$before" = "$after" ] && [ $(( $(date +%s) - $(stat -c %Y "$BUILD/grok-server") )) -gt 2 ] &&
       "$work/bin/grok-server" --help >/dev/null 2>&1 && "$work/bin/grok" --help >/dev/null 2>&1; then
      break
    fi
    sleep 5
  done
fi
"$work/bin/grok-server" --help >/dev/null 2>&1 || die "the copied grok-server does not start"
built=$(date -u -r "$BUILD/grok-server" '+%Y-%m-%d %H:%M UTC')
BIN=$work/bin
# Newer clients speak TLS to grok-server unless told --insecure; this server has no certificate.
client_flags=()
if "$BIN/grok" --help 2>&1 | grep -q -- '--insecure'; then client_flags=(--insecure); fi

stop() {  # ROLE: stops one process by its PID and forgets it
  local p=${pid[$1]:-}
  [ -n "$p" ] || return 0
  kill "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  unset "pid[$1]"
}

alive() { kill -0 "${pid[$1]}" 2>/dev/null; }

wait_for() {  # FILE REGEX [ROLE]: first match of REGEX in FILE, waiting up to 15 s
  local m
  for _ in $(seq 150); do
    if m=$(grep -aoE "$2" "$1" 2>/dev/null | head -n1) && [ -n "$m" ]; then echo "$m"; return 0; fi
    if [ -n "${3:-}" ] && ! alive "$3"; then break; fi
    sleep 0.1
  done
  echo "e2e: timed out waiting for '$2' in $1:" >&2; cat "$1" >&2; return 1
}

free_port() {  # a TCP port nobody listens on, outside the ephemeral range and grok's TCP-tunnel range
  local p used
  used=$(ss -Htan | awk '{n=split($4,a,":"); print a[n]}' | sort -u)
  for _ in $(seq 100); do
    p=$((10000 + RANDOM % 19000)); [ "$p" -ge 20000 ] && [ "$p" -le 20199 ] && continue
    grep -qx "$p" <<<"$used" || { echo "$p"; return 0; }
  done
  die "no free port found"
}

listening_ports() {  # PID: the TCP ports PID listens on
  ss -Htlnp | awk -v p="pid=$1," 'index($0, p) {n=split($4,a,":"); print a[n]}' | sort -un
}

# ------------------------------------------------------------------------------------------- services
mkdir -p "$work/files" "$work/tmp"
b=${BIG%B}; b=${b%i}   # 256MiB, 256Mi, 256M, 268435456: all 1024-based
size_bytes=$(numfmt --from=iec "$b" 2>/dev/null) || die "BIG=$BIG: not a size (e.g. 256MiB)"
log "creating $BIG of random data"
head -c "$size_bytes" /dev/urandom >"$work/files/big"
chmod 644 "$work/files/big"

"$BIN/grok-demo-upstream" --host 127.0.0.1 --port 0 >"$work/demo.log" 2>&1 &
pid[demo]=$!
DEMO_PORT=$(wait_for "$work/demo.log" 'listening 127\.0\.0\.1:[0-9]+' demo | sed 's/.*://')

start_nginx() {
  local try
  for try in 1 2 3 4 5; do
    NGINX_PORT=$(free_port); PROXY_PORT=$(free_port); TWOHOP_PORT=$(free_port)
    [ "$NGINX_PORT" != "$PROXY_PORT" ] || continue
    cat >"$work/nginx.conf" <<NGINX
daemon off;
worker_processes 1;
error_log stderr;
pid $work/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/tmp/body;
    proxy_temp_path $work/tmp/proxy;
    fastcgi_temp_path $work/tmp/fastcgi;
    uwsgi_temp_path $work/tmp/uwsgi;
    scgi_temp_path $work/tmp/scgi;
    sendfile on;
    keepalive_requests 1000000;

    # The local service.
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location = /small { default_type text/plain; return 200 "hello, world\n"; }
        location /files/ { alias $work/files/; }
    }

    # The reference: one reverse-proxy hop in front of the local service.
    upstream origin { server 127.0.0.1:$NGINX_PORT; keepalive 64; }
    upstream demo_upstream { server 127.0.0.1:$DEMO_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$PROXY_PORT;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_max_temp_file_size 0;
        location / { proxy_pass http://origin; }
        location = /upload {
            client_max_body_size 0;
            proxy_request_buffering off;
            proxy_pass http://demo_upstream;
        }
    }

    # Context: two relays in a chain, one more proxy in front of the one-hop proxy.
    upstream onehop { server 127.0.0.1:$PROXY_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$TWOHOP_PORT;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location / { proxy_pass http://onehop; }
    }
}
NGINX
    "$NGINX" -e stderr -p "$work" -c "$work/nginx.conf" >"$work/nginx.log" 2>&1 &
    pid[nginx]=$!
    for _ in $(seq 50); do
      if curl -fsS -o /dev/null "http://127.0.0.1:$PROXY_PORT/small" 2>/dev/null; then return 0; fi
      alive nginx || break
      sleep 0.1
    done
    log "nginx did not start (try $try):"; cat "$work/nginx.log" >&2
    stop nginx
  done
  die "could not start nginx"
}
start_nginx
log "nginx direct=127.0.0.1:$NGINX_PORT one-hop=127.0.0.1:$PROXY_PORT; demo upstream=127.0.0.1:$DEMO_PORT"

cat >"$work/grok-server.yaml" <<YAML
server:
  domain: localhost
  bind_address: 127.0.0.1
  http_port: 0
  grpc_address: 127.0.0.1
  grpc_port: 0
  drain_timeout: 2s
tunnels:
  tcp_port_start: 0
auth:
  tokens: [$TOKEN]
logging:
  level: warn
YAML

# start_grok [WORKERS]: grok-server (GROK_WORKER_POOL_SIZE=WORKERS if given) and `grok http NGINX_PORT`
# as $NAME, plus `grok http DEMO_PORT` as up-$NAME for the upload case. Sets GROK_PORT and GRPC_PORT.
start_grok() {
  local w=${1:-} p code ports
  if [ -n "$w" ]; then
    GROK_WORKER_POOL_SIZE=$w "$BIN/grok-server" --config "$work/grok-server.yaml" >"$work/server.log" 2>&1 &
  else
    env -u GROK_WORKER_POOL_SIZE "$BIN/grok-server" --config "$work/grok-server.yaml" >"$work/server.log" 2>&1 &
  fi
  pid[server]=$!
  # At level warn the "ready" line is not logged: find the two listeners of the PID, and tell the public
  # HTTP one (answers 404 for an unknown host) from the gRPC one.
  GROK_PORT="" GRPC_PORT=""
  for _ in $(seq 100); do
    ports=$(listening_ports "${pid[server]}")
    [ "$(wc -w <<<"$ports")" -ge 2 ] && break
    alive server || { cat "$work/server.log" >&2; die "grok-server exited"; }
    sleep 0.1
  done
  for p in $ports; do
    code=$(curl -s -m 2 -o /dev/null -w '%{http_code}' -H 'Host: nobody.localhost' "http://127.0.0.1:$p/" || true)
    if [ "$code" = 404 ]; then GROK_PORT=$p; else GRPC_PORT=$p; fi
  done
  [ -n "$GROK_PORT" ] && [ -n "$GRPC_PORT" ] || { cat "$work/server.log" >&2; die "cannot find grok-server ports ($ports)"; }
  : >"$work/client.log"; : >"$work/up_client.log"
  "$BIN/grok" "${client_flags[@]}" --config /dev/null http "$NGINX_PORT" --subdomain "$NAME" --server "127.0.0.1:$GRPC_PORT" \
    --token "$TOKEN" --log-level warn >"$work/client.log" 2>&1 &
  pid[client]=$!
  "$BIN/grok" "${client_flags[@]}" --config /dev/null http "$DEMO_PORT" --subdomain "up-$NAME" --server "127.0.0.1:$GRPC_PORT" \
    --token "$TOKEN" --log-level warn >"$work/up_client.log" 2>&1 &
  pid[up_client]=$!
  wait_for "$work/client.log" "http://$NAME\\.localhost:$GROK_PORT" client >/dev/null
  wait_for "$work/up_client.log" "http://up-$NAME\\.localhost:$GROK_PORT" up_client >/dev/null
  local body
  body=$(curl -sS -m 5 -H "Host: $NAME.localhost" "http://127.0.0.1:$GROK_PORT/small")
  [ "$body" = "hello, world" ] || die "GET /small through grok answered '$body'"
}

# stop_grok PHASE: stops the client(s) and grok-server and keeps their logs for the report.
stop_grok() {
  stop client; stop up_client; stop server
  local f
  for f in server client up_client; do
    sed "s/^/[$1] /" "$work/$f.log" >>"$work/all-$f.log"
  done
}

# ------------------------------------------------------------------------------------------ measuring
to_ms() {  # wrk latency (123.45us, 1.23ms, 1.00s, 1.00m) -> milliseconds
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
    printf "%.3f", n }'
}

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
hwm_mib() { awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

role_pid() {  # ROLE: the PID of that process (the nginx worker is nginx's child), empty if none
  if [ "$1" = nginx_worker ]; then pgrep -P "${pid[nginx]}" | head -n1 || true; else echo "${pid[$1]:-}"; fi
}
role_ticks() {  # ROLE: utime+stime clock ticks of that running process, 0 if there is none
  local p
  p=$(role_pid "$1")
  if [ -n "$p" ] && [ -r "/proc/$p/stat" ]; then cpu_ticks "$p"; else echo 0; fi
}
role_switches() {  # ROLE: context switches (voluntary + involuntary) of all its threads so far, 0 if none
  local p
  p=$(role_pid "$1")
  [ -n "$p" ] && [ -d "/proc/$p/task" ] || { echo 0; return; }
  cat /proc/"$p"/task/*/status 2>/dev/null | awk '/^(voluntary|nonvoluntary)_ctxt_switches/ {n += $2} END {print n + 0}'
}

# run_wrk KEY URL CONNS [HOST]: writes $work/wrk-KEY.txt; records req/s, p50, p99 (ms), errors, requests,
# the CPU ticks grok-server (TS), grok (TC) and the nginx worker (TN) used during the run, and their
# threads' context switches (XS, XC, XN).
declare -A RPS=() P50=() P99=() ERRS=() REQS=() TS=() TC=() TN=() XS=() XC=() XN=()
run_wrk() {
  local key=$1 url=$2 c=$3 host=${4:-} t=2 out="$work/wrk-$1.txt"
  [ "$c" -ge 2 ] || t=1
  local hdr=()
  [ -z "$host" ] || hdr=(-H "Host: $host")
  local r before=() after=() sw0=() sw1=()
  for r in server client nginx_worker; do before+=("$(role_ticks "$r")"); sw0+=("$(role_switches "$r")"); done
  wrk -t "$t" -c "$c" -d "$DURATION" --timeout 5s --latency "${hdr[@]}" "$url" >"$out" 2>&1 || true
  for r in server client nginx_worker; do after+=("$(role_ticks "$r")"); sw1+=("$(role_switches "$r")"); done
  TS[$key]=$((after[0] - before[0])); TC[$key]=$((after[1] - before[1])); TN[$key]=$((after[2] - before[2]))
  XS[$key]=$((sw1[0] - sw0[0])); XC[$key]=$((sw1[1] - sw0[1])); XN[$key]=$((sw1[2] - sw0[2]))
  R_RPS=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
  R_P50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
  R_P99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
  R_REQS=$(awk '/requests in/ {print $1}' "$out")
  local non2xx sock
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
  sock=$(awk '/Socket errors:/ {gsub(",", ""); printf "connect %s read %s write %s timeout %s", $4, $6, $8, $10}' "$out")
  R_ERR=""
  [ -z "$non2xx" ] || R_ERR="non-2xx $non2xx"
  [ -z "$sock" ] || R_ERR="${R_ERR:+$R_ERR; }$sock"
  [ -n "$R_RPS" ] || { cat "$out" >&2; die "wrk $key produced no result"; }
  RPS[$key]=$R_RPS; P50[$key]=$R_P50; P99[$key]=$R_P99; ERRS[$key]=$R_ERR; REQS[$key]=$R_REQS
  log "$(printf '%-16s %8s req/s  p50 %8s ms  p99 %8s ms  %s' "$key" "$R_RPS" "$R_P50" "$R_P99" "$R_ERR")"
}

warm() {  # URL [HOST]: one second of load, not measured
  local hdr=()
  [ -z "${2:-}" ] || hdr=(-H "Host: $2")
  wrk -t 1 -c 10 -d 1s "${hdr[@]}" "$1" >/dev/null 2>&1 || true
}

# ------------------------------------------------------------------------------------------- /small
started=$(date +%s)
load0=$(cut -d' ' -f1-3 /proc/loadavg)
start_grok
GROK_AUTO_WORKERS=$(grep -aoE 'workers=[0-9]+' "$work/server.log" | head -n1 | sed 's/.*=//' || true)
[ -n "$GROK_AUTO_WORKERS" ] || GROK_AUTO_WORKERS=$(( $(nproc) > 1 ? $(nproc) / 2 : 1 ))   # auto = half the hardware threads
direct="http://127.0.0.1:$NGINX_PORT/small"
onehop="http://127.0.0.1:$PROXY_PORT/small"
twohop="http://127.0.0.1:$TWOHOP_PORT/small"
grok="http://127.0.0.1:$GROK_PORT/small"
ghost="$NAME.localhost"
warm "$direct"; warm "$onehop"; warm "$twohop"; warm "$grok" "$ghost"
for c in 1 50 200; do
  run_wrk "direct-c$c" "$direct" "$c"
  run_wrk "onehop-c$c" "$onehop" "$c"
  run_wrk "twohop-c$c" "$twohop" "$c"
  run_wrk "grok-c$c" "$grok" "$c" "$ghost"
  alive server && alive client || die "grok died during the c=$c run (see logs above)"
done

# ---------------------------------------------------------------------------------- transfers (curl)
declare -A MBPS=()
download() {  # KEY URL [HOST]
  local hdr=() out
  [ -z "${3:-}" ] || hdr=(-H "Host: $3")
  out=$(curl -sS -m 300 -o /dev/null -w '%{http_code} %{size_download} %{speed_download}' "${hdr[@]}" "$2") || true
  read -r code got speed <<<"$out"
  if [ "$code" != 200 ] || [ "$got" != "$size_bytes" ]; then
    log "download $1: HTTP $code, $got of $size_bytes bytes"; MBPS[$1]="fail"; return
  fi
  MBPS[$1]=$(awk -v s="$speed" 'BEGIN {printf "%.0f", s / 1e6}')
  log "$(printf 'download %-8s %6s MB/s' "$1" "${MBPS[$1]}")"
}
upload() {  # KEY URL [HOST]
  local hdr=() out body
  [ -z "${3:-}" ] || hdr=(-H "Host: $3")
  out=$(curl -sS -m 300 -T "$work/files/big" -H 'Expect:' -o "$work/upload-$1.txt" \
        -w '%{http_code} %{size_upload} %{speed_upload}' "${hdr[@]}" "$2") || true
  read -r code sent speed <<<"$out"
  body=$(cat "$work/upload-$1.txt" 2>/dev/null || true)
  # grok-demo-upstream answers "SIZE SHA256" of what it received: both must match the file.
  if [ "$code" != 200 ] || [ "${body%% *}" != "$size_bytes" ] || [ "${body#* }" != "$big_sha" ]; then
    log "upload $1: HTTP $code, sent $sent, service saw '$body', expected $size_bytes $big_sha"; MBPS[$1]="fail"; return
  fi
  MBPS[$1]=$(awk -v s="$speed" 'BEGIN {printf "%.0f", s / 1e6}')
  log "$(printf 'upload   %-8s %6s MB/s' "$1" "${MBPS[$1]}")"
}
big_sha=$(sha256sum "$work/files/big" | cut -d' ' -f1)   # also warms the page cache
download dl-direct "http://127.0.0.1:$NGINX_PORT/files/big"
download dl-onehop "http://127.0.0.1:$PROXY_PORT/files/big"
download dl-grok "http://127.0.0.1:$GROK_PORT/files/big" "$ghost"
upload ul-direct "http://127.0.0.1:$DEMO_PORT/upload"
upload ul-onehop "http://127.0.0.1:$PROXY_PORT/upload"
upload ul-grok "http://127.0.0.1:$GROK_PORT/upload" "up-$ghost"
GROK_AUTO_HWM_SERVER=$(hwm_mib "${pid[server]}"); GROK_AUTO_HWM_CLIENT=$(hwm_mib "${pid[client]}")
alive server && alive client || die "grok died during the transfers"
stop_grok "auto workers"

# ------------------------------------------------------------------------------------- worker sweep
# SWEEP_ROUNDS rounds (default 2), alternately in ascending and descending order of worker count, so that
# a drift in the machine's background load does not favour one end of the sweep.
declare -A SHWM=() CHWM=()
hz=$(getconf CLK_TCK)
SWEEP_ROUNDS=${SWEEP_ROUNDS:-2}
order=$WORKERS
reversed=$(tr ' ' '\n' <<<"$WORKERS" | grep . | tac | tr '\n' ' ')
for ((round = 1; round <= SWEEP_ROUNDS; round++)); do
  for w in $order; do
    start_grok "$w"
    grok="http://127.0.0.1:$GROK_PORT/small"
    warm "$grok" "$ghost"
    run_wrk "w$w-r$round" "$grok" 50 "$ghost"
    SHWM[$w]=$(awk -v a="${SHWM[$w]:-0}" -v b="$(hwm_mib "${pid[server]}")" 'BEGIN {print (b > a ? b : a)}')
    CHWM[$w]=$(awk -v a="${CHWM[$w]:-0}" -v b="$(hwm_mib "${pid[client]}")" 'BEGIN {print (b > a ? b : a)}')
    alive server && alive client || die "grok died with $w workers"
    stop_grok "$w workers"
  done
  if [ "$order" = "$WORKERS" ]; then order=$reversed; else order=$WORKERS; fi
done

per100k() {  # TICKS REQUESTS -> CPU seconds per 100 000 requests
  awk -v d="$1" -v hz="$hz" -v n="$2" 'BEGIN {if (n > 0) printf "%.2f", d / hz / n * 1e5; else printf "—"}'
}
# Sweep aggregates per worker count: mean req/s, p50, p99 over the rounds, the spread of req/s, CPU summed.
declare -A AVG=() SPREAD=() AP50=() AP99=() ASCPU=() ACCPU=() ANCPU=() AERR=()
for w in $WORKERS; do
  rs=() p5=() p9=() ts=0 tc=0 tn=0 n=0 errs=""
  for ((round = 1; round <= SWEEP_ROUNDS; round++)); do
    k="w$w-r$round"
    rs+=("${RPS[$k]}"); p5+=("${P50[$k]}"); p9+=("${P99[$k]}")
    ts=$((ts + TS[$k])); tc=$((tc + TC[$k])); tn=$((tn + TN[$k])); n=$((n + REQS[$k]))
    [ -z "${ERRS[$k]}" ] || errs="${errs:+$errs / }r$round: ${ERRS[$k]}"
  done
  AVG[$w]=$(printf '%s\n' "${rs[@]}" | awk '{s += $1} END {printf "%.0f", s / NR}')
  SPREAD[$w]=$(printf '%s\n' "${rs[@]}" | paste -sd/ -)
  AP50[$w]=$(printf '%s\n' "${p5[@]}" | awk '{s += $1} END {printf "%.2f", s / NR}')
  AP99[$w]=$(printf '%s\n' "${p9[@]}" | awk '{s += $1} END {printf "%.2f", s / NR}')
  ASCPU[$w]=$(per100k "$ts" "$n"); ACCPU[$w]=$(per100k "$tc" "$n"); ANCPU[$w]=$(per100k "$tn" "$n")
  AERR[$w]=$errs
done
elapsed=$(( $(date +%s) - started ))

# ---------------------------------------------------------------------------------------------- report
mkdir -p "$RESULTS"
stamp=$(date +%Y%m%d-%H%M%S)
md="$RESULTS/e2e-$stamp.md"
png="$RESULTS/e2e-$stamp.png"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a + 0 > 0 && b + 0 > 0) printf "%.2f×", a / b; else printf "—"}'; }
errcell() { local e=$1; [ -n "$e" ] && echo "$e" || echo "none"; }
per_req() { awk -v n="$1" -v r="$2" 'BEGIN {if (r + 0 > 0) printf "%.2f", n / r; else printf "—"}'; }
us_per_req() {  # TICKS REQUESTS -> CPU microseconds per request
  awk -v t="$1" -v r="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN {if (r + 0 > 0) printf "%.0f", t / hz * 1e6 / r; else printf "—"}'
}
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "?")
dirty=$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " (modified)" || true)
{
  echo "# grok end-to-end benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "| machine | |"
  echo "|---|---|"
  echo "| nproc | $(nproc) |"
  echo "| CPU | $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo) |"
  echo "| kernel | $(uname -sr) |"
  echo "| load average at start → end | $load0 → $(cut -d' ' -f1-3 /proc/loadavg) |"
  echo "| grok | $commit$dirty, binaries built $built; tunnel: plaintext gRPC on loopback${client_flags:+ (grok --insecure)}; grok-server pool for the main table: auto = $GROK_AUTO_WORKERS worker$([ "$GROK_AUTO_WORKERS" = 1 ] || echo s) |"
  echo "| tools | $("$NGINX" -v 2>&1 | sed 's/.*: //'), wrk $(wrk -v 2>&1 | awk 'NR==1 {print $2}'), curl $(curl -V | awk 'NR==1 {print $2}') |"
  echo "| settings | DURATION=$DURATION BIG=$BIG, wrk -t1 (c=1) / -t2 (c≥50) --latency, /small = 13-byte body; ran ${elapsed}s |"
  echo
  echo "## /small request rate and latency"
  echo
  echo "grok / one-hop: above 1 is better for grok in req/s and MB/s, below 1 is better for grok in latency."
  echo
  echo "| case | nginx direct | one-hop proxy | two-hop chain | grok | grok / one-hop | grok / two-hop |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for c in 1 50 200; do
    for m in req/s p50 p99; do
      case $m in req/s) declare -n V=RPS; label="req/s" ;; p50) declare -n V=P50; label="p50 ms" ;; p99) declare -n V=P99; label="p99 ms" ;; esac
      echo "| c=$c $label | ${V[direct-c$c]} | ${V[onehop-c$c]} | ${V[twohop-c$c]} | ${V[grok-c$c]} | $(ratio "${V[grok-c$c]}" "${V[onehop-c$c]}") | $(ratio "${V[grok-c$c]}" "${V[twohop-c$c]}") |"
      unset -n V
    done
  done
  echo
  echo "## Thread wake-ups and CPU per request (/small)"
  echo
  echo "Context switches (voluntary + involuntary, all threads, from /proc/PID/task/*/status) and user+system"
  echo "CPU (/proc/PID/stat) per request during the runs above. In the one-hop row the nginx worker is the"
  echo "proxy and the local service together; in the grok row it is the local service alone."
  echo
  echo "| case | one-hop nginx worker | grok-server | grok | nginx worker behind grok |"
  echo "|---|---:|---:|---:|---:|"
  for c in 1 50; do
    echo "| c=$c switches / request | $(per_req "${XN[onehop-c$c]}" "${REQS[onehop-c$c]}") | $(per_req "${XS[grok-c$c]}" "${REQS[grok-c$c]}") | $(per_req "${XC[grok-c$c]}" "${REQS[grok-c$c]}") | $(per_req "${XN[grok-c$c]}" "${REQS[grok-c$c]}") |"
    echo "| c=$c CPU µs / request | $(us_per_req "${TN[onehop-c$c]}" "${REQS[onehop-c$c]}") | $(us_per_req "${TS[grok-c$c]}" "${REQS[grok-c$c]}") | $(us_per_req "${TC[grok-c$c]}" "${REQS[grok-c$c]}") | $(us_per_req "${TN[grok-c$c]}" "${REQS[grok-c$c]}") |"
  done
  echo
  echo "## Transfers ($BIG, curl, MB/s = 10^6 bytes/s)"
  echo
  echo "| transfer | direct to the local service | one-hop proxy | grok | grok / one-hop |"
  echo "|---|---:|---:|---:|---:|"
  echo "| download (nginx /files/) | ${MBPS[dl-direct]} | ${MBPS[dl-onehop]} | ${MBPS[dl-grok]} | $(ratio "${MBPS[dl-grok]}" "${MBPS[dl-onehop]}") |"
  echo "| upload (grok-demo-upstream /upload) | ${MBPS[ul-direct]} | ${MBPS[ul-onehop]} | ${MBPS[ul-grok]} | $(ratio "${MBPS[ul-grok]}" "${MBPS[ul-onehop]}") |"
  echo
  echo "Peak RSS (VmHWM) after the transfers: grok-server $GROK_AUTO_HWM_SERVER MiB, grok $GROK_AUTO_HWM_CLIENT MiB."
  echo
  echo "## grok-server worker pool sweep (/small, c=50, $SWEEP_ROUNDS rounds of $DURATION each)"
  echo
  echo "grok-server and both grok clients are restarted for every run; req/s, p50 and p99 are means over the"
  echo "rounds (each round's req/s in brackets); CPU is user+system seconds per 100 000 requests from"
  echo "/proc/PID/stat over all rounds; VmHWM is the highest peak RSS seen. \"nginx worker\" is the local"
  echo "service behind grok; in the one-hop row it is the proxy and the local service together (one worker)."
  echo
  echo "| GROK_WORKER_POOL_SIZE | req/s | p50 ms | p99 ms | grok / one-hop req/s | grok-server CPU s / 100k | grok CPU s / 100k | nginx worker CPU s / 100k | grok-server VmHWM MiB | grok VmHWM MiB | wrk errors |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  for w in $WORKERS; do
    echo "| $w | ${AVG[$w]} (${SPREAD[$w]}) | ${AP50[$w]} | ${AP99[$w]} | $(ratio "${AVG[$w]}" "${RPS[onehop-c50]}") | ${ASCPU[$w]} | ${ACCPU[$w]} | ${ANCPU[$w]} | ${SHWM[$w]} | ${CHWM[$w]} | $(errcell "${AERR[$w]}") |"
  done
  echo "| auto = $GROK_AUTO_WORKERS (main table run) | ${RPS[grok-c50]} | ${P50[grok-c50]} | ${P99[grok-c50]} | $(ratio "${RPS[grok-c50]}" "${RPS[onehop-c50]}") | $(per100k "${TS[grok-c50]}" "${REQS[grok-c50]}") | $(per100k "${TC[grok-c50]}" "${REQS[grok-c50]}") | $(per100k "${TN[grok-c50]}" "${REQS[grok-c50]}") | | | $(errcell "${ERRS[grok-c50]}") |"
  echo "| one-hop proxy reference | ${RPS[onehop-c50]} | ${P50[onehop-c50]} | ${P99[onehop-c50]} | 1.00× | | | $(per100k "${TN[onehop-c50]}" "${REQS[onehop-c50]}") | | | $(errcell "${ERRS[onehop-c50]}") |"
  echo
  echo "## wrk errors in the /small runs"
  echo
  echo "| run | errors |"
  echo "|---|---|"
  for c in 1 50 200; do
    for k in direct onehop twohop grok; do echo "| $k c=$c | $(errcell "${ERRS[$k-c$c]}") |"; done
  done
  echo
  # grok prints one console line per exchange ("GET /small  200  0ms  13B"); anything else, or a status
  # other than 200, is worth a look. grok-server logs at warn, so each of its lines is one.
  local_re='^\[[^]]*\] (GET|PUT|POST|HEAD) [^ ]+  '
  ok_re="${local_re}200  "
  n_ex=$(cat "$work"/all-client.log "$work"/all-up_client.log | grep -aEc "$local_re" || true)
  n_bad=$(cat "$work"/all-client.log "$work"/all-up_client.log | grep -aE "$local_re" | grep -aEvc "$ok_re" || true)
  n_srv=$(grep -ac . "$work/all-server.log" || true)
  echo "## grok's own logs"
  echo
  echo "grok logged $n_ex exchanges, $n_bad of them not 200; grok-server logged $n_srv lines at warn or above."
  other=$( { grep -aEv "$local_re|Forwarding  " "$work"/all-client.log "$work"/all-up_client.log -h || true;
             grep -aE "$local_re" "$work"/all-client.log "$work"/all-up_client.log -h | grep -aEv "$ok_re" || true;
             cat "$work/all-server.log"; } | sed -E -e 's/^(\[[^]]*\] )[0-9-]+ [0-9:.]+ /\1/' -e 's/127[.]0[.]0[.]1:[0-9]+/127.0.0.1:PORT/g' | sort | uniq -c | sort -rn | head -n 15)
  if [ -n "$other" ]; then
    echo "Other lines (count, [phase], text; timestamps dropped, first 15 kinds):"
    echo
    echo '```'
    echo "$other"
    echo '```'
  fi
  echo
  echo "Chart: $(basename "$png")"
} >"$md"

{
  for w in $WORKERS; do
    printf '%s %s %s %s\n' "$w" "${AVG[$w]}" \
      "$(tr / '\n' <<<"${SPREAD[$w]}" | sort -n | head -n1)" "$(tr / '\n' <<<"${SPREAD[$w]}" | sort -n | tail -n1)"
  done
} >"$work/sweep.dat"
gnuplot <<GP || log "gnuplot failed; no chart"
set terminal pngcairo size 900,540 font ",11" noenhanced
set output "$png"
set title "grok /small at c=50: req/s by grok-server worker pool size ($(nproc) cores, DURATION=$DURATION)"
set xlabel "GROK_WORKER_POOL_SIZE"
set ylabel "requests / s"
set yrange [0:$(awk -v a="${RPS[direct-c50]}" -v b="${RPS[onehop-c50]}" '{if ($4 > m) m = $4} END {m = (a > m ? a : m); m = (b > m ? b : m); print int(m * 1.35)}' "$work/sweep.dat")]
set xrange [-0.6:$(wc -w <<<"$WORKERS") - 0.4]
set grid ytics
set style fill solid 0.6
set boxwidth 0.6
set key top right box opaque
plot "$work/sweep.dat" using 0:2:xtic(1) with boxes title "grok (mean of $SWEEP_ROUNDS rounds)", \
     "" using 0:2:3:4 with yerrorbars lc rgb "black" pt 0 title "min..max", \
     "" using 0:4:(sprintf("%d", \$2)) with labels offset 0,1 notitle, \
     ${RPS[onehop-c50]} with lines lw 2 dt 2 lc rgb "#0060c0" title "nginx one-hop proxy (${RPS[onehop-c50]})", \
     ${RPS[direct-c50]} with lines lw 2 dt 3 lc rgb "#008040" title "nginx direct (${RPS[direct-c50]})"
GP

cat "$md"
echo
echo "results: $md"
[ -f "$png" ] && echo "chart:   $png"
