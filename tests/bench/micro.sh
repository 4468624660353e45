#!/usr/bin/env bash
# Write-path micro-benchmark (tests/bench/write_path.cpp): mutex around each send vs a strand with one
# frame per write vs grok's batching frame_writer, workers 1..16, 1 KiB and 64 KiB frames, three T_proc/T_send
# mixes. Runs on this machine only (no network), about 10 minutes (each cell three times).
#
#   bash tests/bench/micro.sh                    # full run
#   MIN_TIME=0.1 SCENARIOS=cpu bash tests/bench/micro.sh   # quick look at one mix
#   QUIET=600 bash tests/bench/micro.sh       # first wait (up to 10 min) for the machine to be idle
#
# Output: RESULTS/micro-DATE.md (markdown tables) and RESULTS/micro-DATE.json (Google Benchmark's own
# output, every counter). RESULTS defaults to /tmp/grok-bench-results. Needs build/grok_bench_write_path
# (libbenchmark-dev; `cmake --build build --target grok_bench_write_path`) and python3 for the tables.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-$root/build}
RESULTS=${RESULTS:-/tmp/grok-bench-results}
MIN_TIME=${MIN_TIME:-0.5}          # seconds per cell (Google Benchmark 1.7 takes a bare number)
# The CPU-bound mix does about 2 000 requests a second, so a 0.5 s cell is two rounds of 500 and its
# 16-worker / best-count ratio moved by ±4 % between runs; its cells run MIN_TIME_CPU seconds instead.
MIN_TIME_CPU=${MIN_TIME_CPU:-3}
SCENARIOS=${SCENARIOS:-send,mixed,cpu}
FRAMES_PER_ROUND=${FRAMES_PER_ROUND:-4096}
IN_FLIGHT=${IN_FLIGHT:-64}
# Each cell runs REPETITIONS times back to back; the tables show the run with the median frames/s, so
# one run disturbed by the rest of the machine does not decide a ratio.
REPETITIONS=${REPETITIONS:-3}
# The CPU-bound rows only mean something when this process gets both cores: with QUIET=S the script first
# waits up to S seconds for the 1-minute load average to drop below 0.7 (the figures say what it was).
QUIET=${QUIET:-0}
BIN=$BUILD/tests/bench/grok_bench_write_path

die() { echo "micro: error: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "$BIN is missing (apt-get install libbenchmark-dev, then build the target grok_bench_write_path)"
command -v python3 >/dev/null || die "python3 is needed to write the tables"

mkdir -p "$RESULTS"
stamp=$(date -u +%Y%m%d-%H%M%S)
json=$RESULTS/micro-$stamp.json
md=$RESULTS/micro-$stamp.md
work=$(mktemp -d /tmp/grok-micro.XXXXXX)
trap 'rm -rf "$work"' EXIT
# A private copy, so that a rebuild meanwhile cannot swap the binary mid-run.
cp "$BIN" "$work/bench"

for ((i = 0; i < QUIET; i += 5)); do
  awk '{exit !($1 < 0.7)}' /proc/loadavg && break
  sleep 5
done
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$(date +%s)
# Bounded: 90 cells × REPETITIONS of about MIN_TIME (cpu: MIN_TIME_CPU) each plus set-up; the timeouts
# only catch a hang. One run per cell length; the tables read both JSON files.
run_bench() {  # scenarios min_time json
  timeout 1200 "$work/bench" --frames_per_round="$FRAMES_PER_ROUND" --in_flight="$IN_FLIGHT" --scenarios="$1" \
    --benchmark_min_time="$2" --benchmark_repetitions="$REPETITIONS" --benchmark_out="$3" --benchmark_out_format=json \
    --benchmark_counters_tabular=true | tee -a "$work/console.txt"
}
short=$(tr ',' '\n' <<<"$SCENARIOS" | grep -vx cpu | paste -sd, || true)
jsons=()
if [ -n "$short" ]; then run_bench "$short" "$MIN_TIME" "$work/short.json"; jsons+=("$work/short.json"); fi
if tr ',' '\n' <<<"$SCENARIOS" | grep -qx cpu; then run_bench cpu "$MIN_TIME_CPU" "$work/cpu.json"; jsons+=("$work/cpu.json"); fi
[ ${#jsons[@]} -gt 0 ] || die "SCENARIOS=$SCENARIOS names none of send, mixed, cpu"
python3 - "$json" "${jsons[@]}" <<'PY'
import json, sys
out = None
for f in sys.argv[2:]:
    d = json.load(open(f))
    if out is None:
        out = d
    else:
        out["benchmarks"] += d["benchmarks"]
json.dump(out, open(sys.argv[1], "w"), indent=1)
PY
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
took=$(( $(date +%s) - t0 ))
calibration=$(grep -m1 '^calibration:' "$work/console.txt" || true)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')

python3 - "$json" "$md" <<PY
import json, sys, collections
data = json.load(open(sys.argv[1]))
runs = collections.defaultdict(list)
for b in data["benchmarks"]:
    if b.get("run_type", "iteration") != "iteration":
        continue
    _, sc, size, design, w = b["name"].split("/")[:5]
    w = int(w.split(":")[1])
    runs[(sc, size, design, w)].append(b)
# Each cell: its run with the median frames/s (of REPETITIONS).
rows = {k: sorted(v, key=lambda b: b["items_per_second"])[len(v) // 2] for k, v in runs.items()}
designs = ["mutex", "strand_1frame", "grok_batched"]
scen = {"send": "T_proc 2 µs, T_send 20 µs (the stream is the bottleneck)",
        "mixed": "T_proc 20 µs, T_send 20 µs",
        "cpu": "T_proc 1000 µs, T_send 20 µs (CPU-bound: the workers' own work dominates)"}
workers = [1, 2, 4, 8, 16]
out = []
p = out.append
p("# grok write-path micro-benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')")
p("")
p("| machine | |")
p("|---|---|")
p("| nproc | $(nproc) |")
p("| CPU | $cpu |")
p("| kernel | $(uname -sr) |")
p("| load average at start → end | $load_start → $load_end |")
p("| grok | $commit; grok_bench_write_path, Google Benchmark $(dpkg-query -W -f='${Version}' libbenchmark-dev 2>/dev/null || echo '?') |")
p("| settings | MIN_TIME=${MIN_TIME}s per run (cpu mix: MIN_TIME_CPU=${MIN_TIME_CPU}s), median of $REPETITIONS runs per cell; $IN_FLIGHT requests in flight, a closed loop kept in steady state, timed in rounds of min($FRAMES_PER_ROUND, 0.5 s / T_proc) frames; ran ${took}s |")
p("| $calibration | |" if "$calibration" else "")
p("")
p("How to read it: N worker threads run one io_context (grok's worker pool). Each request burns T_proc of CPU,")
p("builds one Data frame and hands it to the send path; the sink takes one write at a time, serializes the Batch")
p("and is then busy for T_send on its own thread, and OnWriteDone arrives on that thread. **mutex**: the worker")
p("locks the tunnel's mutex and blocks until its write completes (the design note). **strand_1frame**: a strand")
p("owns the stream, one frame per write. **grok_batched**: grok's frame_writer on a strand, each write carries")
p("everything queued. Latency = frame handed to the send path → its write completed. *cores* = CPU the")
p("process used / wall time (the machine is shared; below ~2 means other work had the cores).")
for sc in ["send", "mixed", "cpu"]:
    for size in ["1KiB", "64KiB"]:
        if not any((sc, size, d, w) in rows for d in designs for w in workers):
            continue
        p("")
        p(f"## {sc}: {scen[sc]}; {size} frames")
        p("")
        p("| workers | " + " | ".join(f"{d} frames/s | MB/s | p50 / p99 µs" for d in designs) + " |")
        p("|---:|" + "---:|---:|---:|" * len(designs))
        for w in workers:
            cells = []
            for d in designs:
                b = rows.get((sc, size, d, w))
                if b is None:
                    cells += ["", "", ""]
                    continue
                cells += [f"{b['items_per_second']:,.0f}".replace(",", " "),
                          f"{b['bytes_per_second'] / 1e6:,.1f}".replace(",", " "),
                          f"{b['p50_us']:.0f} / {b['p99_us']:.0f}"]
            p(f"| {w} | " + " | ".join(cells) + " |")
        p("")
        p("| workers | " + " | ".join(f"{d} frames/write | write µs | cores" for d in designs) + " |")
        p("|---:|" + "---:|---:|---:|" * len(designs))
        for w in workers:
            cells = []
            for d in designs:
                b = rows.get((sc, size, d, w))
                if b is None:
                    cells += ["", "", ""]
                    continue
                cells += [f"{b['frames_per_write']:.1f}", f"{b['write_us']:.1f}", f"{b['cores']:.2f}"]
            p(f"| {w} | " + " | ".join(cells) + " |")

p("")
p("## Scaling with workers (frames/s ratios)")
p("")
p("Targets for the CPU-bound mix: 2 workers ≥ 1.7× 1 worker; 16 workers ≥ 0.95× the best worker count.")
p("")
p("| mix | frame | design | 2w / 1w | best workers | 16w / best | vs mutex at the same workers (best..worst) |")
p("|---|---|---|---:|---:|---:|---|")
for sc in ["send", "mixed", "cpu"]:
    for size in ["1KiB", "64KiB"]:
        for d in designs:
            r = {w: rows[(sc, size, d, w)]["items_per_second"] for w in workers if (sc, size, d, w) in rows}
            if 1 not in r or 2 not in r or 16 not in r:
                continue
            best = max(r, key=r.get)
            vs = [r[w] / rows[(sc, size, "mutex", w)]["items_per_second"] for w in r if (sc, size, "mutex", w) in rows]
            ok2 = "✓" if r[2] / r[1] >= 1.7 else "✗"
            ok16 = "✓" if r[16] / r[best] >= 0.95 else "✗"
            mark = lambda s, ok: f"{s} {ok}" if sc == "cpu" else s
            p(f"| {sc} | {size} | {d} | {mark(f'{r[2]/r[1]:.2f}×', ok2)} | {best} | {mark(f'{r[16]/r[best]:.2f}×', ok16)} | "
              f"{max(vs):.1f}×..{min(vs):.1f}× |")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
PY
echo "micro: wrote $md and $json (${took}s)" >&2
