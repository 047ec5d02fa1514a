#!/usr/bin/env bash
# Memory benchmarks of flsignal (BENCHMARKS.md, "flsignal: memory after load
# and soak"), on loopback, one fresh server per part:
#
#   waves  WAVES times, WAVE_NODES nodes join at once and leave (one `flload
#          storm` each); the server's RSS before the first wave and
#          WAVE_WAIT seconds after each wave left (once the server has
#          closed their sockets: its fds are back, or WAVE_TIMEOUT passed).
#   idle   IDLE_NODES idle nodes: the server's memory per node (`flload idle`).
#   soak   `flload soak` for SOAK_DURATION with SOAK_NODES nodes on average,
#          each staying SOAK_LIFETIME, and SOAK_PAIRS relaying pairs.
#
#   bash scripts/bench_soak.sh                 # all three
#   PARTS="waves idle" bash scripts/bench_soak.sh
#   FLSIGNAL=/path/to/other/flsignal bash scripts/bench_soak.sh   # another build
#
# Extra server flags go in FLSIGNAL_ARGS; the server's environment passes
# through (FLSIGNAL_* settings, GLIBC_TUNABLES, LD_PRELOAD for an allocator).
set -euo pipefail
cd "$(dirname "$0")/.."

PARTS="${PARTS:-waves idle soak}"
WAVES="${WAVES:-10}" WAVE_NODES="${WAVE_NODES:-8000}" WAVE_WAIT="${WAVE_WAIT:-2}" WAVE_TIMEOUT="${WAVE_TIMEOUT:-60}"
IDLE_NODES="${IDLE_NODES:-15000}"
SOAK_NODES="${SOAK_NODES:-10000}" SOAK_PAIRS="${SOAK_PAIRS:-20}"
SOAK_DURATION="${SOAK_DURATION:-600}" SOAK_LIFETIME="${SOAK_LIFETIME:-60}" SOAK_REPORT="${SOAK_REPORT:-60}"
PORT="${PORT:-18765}"
FLSIGNAL_ARGS="${FLSIGNAL_ARGS:-}"

CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
if [ -z "${FLSIGNAL:-}" ] || [ -z "${FLLOAD:-}" ]; then
  cargo build --release -j2 -p flsignal -p e2e --bin flsignal --bin flload
fi
FLSIGNAL="${FLSIGNAL:-$CARGO_TARGET_DIR/release/flsignal}"
FLLOAD="${FLLOAD:-$CARGO_TARGET_DIR/release/flload}"
url="ws://127.0.0.1:$PORT/"

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
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
  # shellcheck disable=SC2086 # FLSIGNAL_ARGS is a list of flags
  "$FLSIGNAL" --listen "127.0.0.1:$PORT" --stun-listen off --max-connections-per-ip 65536 \
    --rate-per-second 1000000 --rate-burst 1000000 \
    --announce-rate-per-second 1000000 --announce-rate-burst 1000000 $FLSIGNAL_ARGS >/dev/null 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    if [ -n "$(ss -Hltn "sport = :$PORT")" ]; then return 0; fi
    sleep 0.05
  done
  echo "flsignal did not start" >&2
  return 1
}

rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status"; }
fds() { ls "/proc/$server_pid/fd" | wc -l; }

for part in $PARTS; do
  case "$part" in
    waves)
      start_server
      echo "== waves: $WAVES × $WAVE_NODES nodes join at once and leave; RSS ${WAVE_WAIT} s after each"
      fds_before="$(fds)"
      echo "before: RSS $(rss) KiB, $fds_before fds"
      after=()
      for wave in $(seq "$WAVES"); do
        out="$("$FLLOAD" storm --url "$url" --nodes "$WAVE_NODES" --source-ips 8 --settle 0.5 2>&1)" ||
          echo "flload failed in wave $wave" >&2
        peak="$(rss)"
        left_at="$(date +%s.%N)"
        while [ "$(fds)" -gt "$fds_before" ] &&
          awk -v t="$left_at" -v now="$(date +%s.%N)" -v max="$WAVE_TIMEOUT" 'BEGIN { exit !(now - t < max) }'; do
          sleep 0.1
        done
        closed="$(awk -v t="$left_at" -v now="$(date +%s.%N)" 'BEGIN { printf "%.1f", now - t }')"
        sleep "$WAVE_WAIT"
        kib="$(rss)"
        after+=("$kib")
        registered="$(echo "$out" | grep -o 'registered=[0-9]*' | head -1 || true)"
        echo "wave $wave: $registered; RSS $peak KiB as they left; sockets closed after $closed s; ${WAVE_WAIT} s later RSS $kib KiB, $(fds) fds"
      done
      printf '%s\n' "${after[@]}" | sort -n | awk '{ v[NR] = $1 } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "RSS after a wave left: median %d KiB (min %d, max %d)\n", m, v[1], v[NR] }'
      stop_server
      ;;
    idle)
      start_server
      echo "== idle: $IDLE_NODES nodes"
      "$FLLOAD" idle --url "$url" --nodes "$IDLE_NODES" --source-ips 8 --server-pid "$server_pid"
      stop_server
      ;;
    soak)
      start_server
      echo "== soak: $SOAK_NODES nodes on average for $SOAK_DURATION s"
      "$FLLOAD" soak --url "$url" --nodes "$SOAK_NODES" --pairs "$SOAK_PAIRS" --duration "$SOAK_DURATION" \
        --lifetime "$SOAK_LIFETIME" --report "$SOAK_REPORT" --source-ips 8 --server-pid "$server_pid"
      stop_server
      ;;
    *) echo "unknown part $part (waves, idle, soak)" >&2; exit 1 ;;
  esac
done
