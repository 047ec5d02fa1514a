#!/usr/bin/env bash
# How many relayed pairs one flsignal holds (BENCHMARKS.md, "Datagram
# relay"): `flload datagrams` with growing numbers of pairs, each node
# sending its peer WireGuard-sized relay frames (1485 bytes) at RATE_KBIT
# (1000) kbit/s, both ways, for DURATION seconds; REPEATS runs per step,
# a fresh flsignal (release build, loopback) for each run. The server's
# own relay cap (--relay-server-*) is lifted, so that the machine is
# measured rather than the default cap; each node's cap (10 Mbit/s) is
# far above the rate. flload runs on the same machine and takes its share
# of the CPU.
#
#   bash scripts/bench_relay_pairs.sh                 # 50 100 200 400 800 pairs
#   REPEATS=5 bash scripts/bench_relay_pairs.sh 100 300 600
#
# Each run prints flload's `result mode=datagrams …` line (loss, latency
# percentiles, server CPU per MiB); the summary has the medians per step.
set -euo pipefail
cd "$(dirname "$0")/.."

REPEATS="${REPEATS:-3}"
RATE_KBIT="${RATE_KBIT:-1000}"
DURATION="${DURATION:-10}"
PORT="${PORT:-18790}"
if (($#)); then steps=("$@"); else steps=(50 100 200 400 800); fi

cargo build --release -j2 -p flsignal -p e2e --bin flsignal --bin flload
bin="${CARGO_TARGET_DIR:-target}/release"
ulimit -n "$(ulimit -Hn)"

server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap stop_server EXIT

start_server() {
  "$bin/flsignal" --listen "127.0.0.1:$PORT" --stun-listen off \
    --announce-rate-per-second 100000 --announce-rate-burst 100000 \
    --max-connections-per-ip 100000 \
    --relay-server-bytes-per-second 4000000000 --relay-server-burst 67108864 \
    2>/dev/null &
  server_pid=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return; fi
    sleep 0.05
  done
  echo "flsignal did not listen on $PORT" >&2
  exit 1
}

results="$(mktemp)"
for pairs in "${steps[@]}"; do
  for run in $(seq "$REPEATS"); do
    start_server
    line="$("$bin/flload" datagrams --url "ws://127.0.0.1:$PORT/" --pairs "$pairs" \
      --rate-kbit "$RATE_KBIT" --duration "$DURATION" --source-ips 8 --in-flight 50 \
      --server-pid "$server_pid" | grep '^result')"
    stop_server
    echo "$line"
    echo "$line" >>"$results"
  done
done

echo "== medians (min-max) over $REPEATS runs"
awk '
  function field(name,   i, kv) {
    for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == name) return kv[2] }
    return ""
  }
  { p = field("pairs"); n[p]++; k = n[p]
    loss[p, k] = field("loss_pct"); p99[p, k] = field("latency_p99_ms"); p50[p, k] = field("latency_p50_ms")
    cpu[p, k] = field("server_cpu_ms_per_mib"); gen[p, k] = field("flload_cpu_s")
    srv[p, k] = field("server_user_s") + field("server_system_s") }
  function median(a, p, count,   i, j, t, v) {
    for (i = 1; i <= count; i++) v[i] = a[p, i] + 0
    for (i = 1; i <= count; i++) for (j = i + 1; j <= count; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    return sprintf("%.3f (%.3f-%.3f)", v[int((count + 1) / 2)], v[1], v[count])
  }
  END {
    for (p in n) printf "%6d pairs: loss %% %s  p50 ms %s  p99 ms %s  server CPU ms/MiB %s  CPU s server %s flload %s\n", \
      p, median(loss, p, n[p]), median(p50, p, n[p]), median(p99, p, n[p]), median(cpu, p, n[p]), \
      median(srv, p, n[p]), median(gen, p, n[p]) | "sort -n"
  }' "$results"
rm -f "$results"
