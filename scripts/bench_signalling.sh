#!/usr/bin/env bash
# Signalling benchmark (BENCHMARKS.md, "Signalling against fledger"): our
# flsignal and fledger's flsignal 0.10 side by side in one run, each in its
# own network namespace with `flload` beside it, a fresh server for every
# measurement. Every measurement is repeated; medians with min–max and the
# ratio ours/fledger are printed at the end. Needs root (namespaces).
#
#   sudo bash scripts/bench_signalling.sh            # 3 repeats
#   sudo REPEATS=5 bash scripts/bench_signalling.sh
#
# fledger's server, never built inside this repository:
#   cargo install flsignal --version 0.10.0 --root /opt/fledger
#   export FLEDGER_FLSIGNAL=/opt/fledger/bin/flsignal
# Without it only ours is measured.
#
# To compare two builds of ours instead (a change against main), point
# BASE_FLSIGNAL at the other build's binary: it takes fledger's place in
# every round, measured exactly as ours (idle memory included), and the
# last column is ours/base:
#   sudo BASE_FLSIGNAL=/path/to/main/target/release/flsignal bash scripts/bench_signalling.sh
set -euo pipefail
cd "$(dirname "$0")/.."

REPEATS="${REPEATS:-3}"
# Measures (the targets of the benchmark issue).
HS_NODES="${HS_NODES:-200}" HS_IN_FLIGHT="${HS_IN_FLIGHT:-20}"
RELAY_PAIRS="${RELAY_PAIRS:-20}" RELAY_WINDOW="${RELAY_WINDOW:-8}" RELAY_MESSAGES="${RELAY_MESSAGES:-10000}"
STORM_NODES="${STORM_NODES:-10000}" STORM_IN_FLIGHT="${STORM_IN_FLIGHT:-1000}" STORM_DEADLINE="${STORM_DEADLINE:-30}"
IDLE_NODES="${IDLE_NODES:-15000}"
# fledger's server may take all the memory it can get in the storm (it
# pushes the full node list to every node on every join); it gets this
# much address space (KiB) and is killed by its own allocator beyond.
FLEDGER_MEMORY_KIB="${FLEDGER_MEMORY_KIB:-6000000}"
FLEDGER_FLSIGNAL="${FLEDGER_FLSIGNAL:-$(cd .. && pwd)/fledger-bin/bin/flsignal}"
BASE_FLSIGNAL="${BASE_FLSIGNAL:-}"

CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -j2 -p flsignal -p e2e --bin flsignal --bin flload
bin="$CARGO_TARGET_DIR/release"
bin="$(cd "$bin" && pwd)"

servers=(ours)
other=fledger
if [ -n "$BASE_FLSIGNAL" ]; then
  [ -x "$BASE_FLSIGNAL" ] || { echo "BASE_FLSIGNAL $BASE_FLSIGNAL is not executable" >&2; exit 1; }
  servers+=(base)
  other=base
elif [ -x "$FLEDGER_FLSIGNAL" ]; then
  servers+=(fledger)
else
  echo "fledger's flsignal not found at $FLEDGER_FLSIGNAL: measuring ours only." >&2
  echo "  install it outside this repository and point FLEDGER_FLSIGNAL at it:" >&2
  echo "  cargo install flsignal --version 0.10.0 --root /opt/fledger" >&2
  echo "  export FLEDGER_FLSIGNAL=/opt/fledger/bin/flsignal" >&2
fi

results="$(mktemp -d)"
server_pid=""
namespaces=()
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
cleanup() {
  stop_server
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$results"
}
trap cleanup EXIT

# One namespace per server: fledger's listens on 0.0.0.0:8765 whatever we
# say, and neither should meet anything else on this machine.
declare -A ns_of
for server in "${servers[@]}"; do
  ns="flbench-$server-$$"
  ip netns add "$ns"
  namespaces+=("$ns")
  ip -n "$ns" link set lo up
  ns_of[$server]="$ns"
done
port=8765
url="ws://127.0.0.1:$port/"

# Starts a fresh server of kind $1 in its namespace (fledger's leaks
# sockets, so no measurement inherits another's state).
start_server() {
  local server="$1" ns="${ns_of[$1]}"
  if [ "$server" != fledger ]; then
    local flsignal="$bin/flsignal"
    if [ "$server" = base ]; then flsignal="$BASE_FLSIGNAL"; fi
    # The per-connection rate limit, per-IP cap and per-source announce
    # rate would otherwise be what is measured: all load comes from a few
    # loopback addresses.
    ip netns exec "$ns" bash -c "ulimit -n 20000; exec \"\$@\"" _ \
      "$flsignal" --listen "127.0.0.1:$port" --max-connections-per-ip 20000 \
      --rate-per-second 1000000 --rate-burst 1000000 \
      --announce-rate-per-second 1000000 --announce-rate-burst 1000000 >/dev/null 2>&1 &
  else
    ip netns exec "$ns" bash -c "ulimit -n 20000; ulimit -v $FLEDGER_MEMORY_KIB; exec \"\$@\"" _ \
      "$FLEDGER_FLSIGNAL" -q >/dev/null 2>&1 &
  fi
  server_pid=$!
  # Wait for the listening socket without connecting to it: one TCP
  # connection that sends nothing stops fledger's server from completing
  # any later handshake.
  for _ in $(seq 100); do
    if [ -n "$(ip netns exec "$ns" ss -Hltn "sport = :$port")" ]; then return 0; fi
    sleep 0.05
  done
  echo "$server server did not start" >&2
  return 1
}

# run SERVER MEASURE flload-args…: one measurement on a fresh server; the
# fields of flload's result line are appended to $results/SERVER.MEASURE.KEY.
run() {
  local server="$1" measure="$2"
  shift 2
  start_server "$server"
  local out
  out="$(ip netns exec "${ns_of[$server]}" bash -c "ulimit -n 20000; exec \"\$@\"" _ \
    "$bin/flload" "$@" --url "$url" 2>&1)" || echo "flload failed ($server $measure)" >&2
  stop_server
  echo "$out" | sed "s/^/  [$server $measure] /"
  local line
  line="$(echo "$out" | grep "^result " | tail -1 || true)"
  for field in $line; do
    case "$field" in
      *=*) echo "${field#*=}" >>"$results/$server.$measure.${field%%=*}" ;;
    esac
  done
}

for round in $(seq "$REPEATS"); do
  echo "== round $round of $REPEATS"
  order=("${servers[@]}")
  # Two builds of ours take turns going first, so neither always meets
  # the machine warmer or busier.
  if [ "$other" = base ] && [ $((round % 2)) -eq 0 ]; then order=(base ours); fi
  for server in "${order[@]}"; do
    run "$server" handshakes handshakes --nodes "$HS_NODES" --in-flight "$HS_IN_FLIGHT" --source-ips 4
    run "$server" relay relay --pairs "$RELAY_PAIRS" --window "$RELAY_WINDOW" \
      --messages "$RELAY_MESSAGES" --rtt-samples 500
    run "$server" storm storm --nodes "$STORM_NODES" --in-flight "$STORM_IN_FLIGHT" \
      --source-ips 8 --deadline "$STORM_DEADLINE" --settle 1
  done
  # Ours (and a base build of ours) only: fledger's server has no notion
  # of a bounded idle node.
  for server in "${order[@]}"; do
    [ "$server" != fledger ] || continue
    start_server "$server"
    pid="$(pgrep -P "$server_pid" -n || echo "$server_pid")"
    out="$(ip netns exec "${ns_of[$server]}" bash -c "ulimit -n 20000; exec \"\$@\"" _ \
      "$bin/flload" idle --url "$url" --nodes "$IDLE_NODES" --source-ips 8 --server-pid "$pid" 2>&1)" || true
    stop_server
    echo "$out" | sed "s/^/  [$server idle] /"
    kib="$(echo "$out" | grep '^result ' | grep -o 'kib_per_node=[0-9.]*' | cut -d= -f2 || true)"
    if [ -n "$kib" ]; then echo "$kib" >>"$results/$server.idle.kib_per_node"; fi
  done
done

# "median (min–max)" of a result file, or "-".
summary() {
  [ -s "$1" ] || { echo "-"; return; }
  sort -g "$1" | awk 'function f(x) { return (x >= 100) ? sprintf("%.0f", x) : sprintf("%.3g", x) }
    { v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%s (%s–%s)", f(m), f(v[1]), f(v[NR]) }'
}
median() {
  [ -s "$1" ] || { echo ""; return; }
  sort -g "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() {
  local a b
  a="$(median "$results/ours.$1")" b="$(median "$results/$other.$1")"
  if [ -n "$a" ] && [ -n "$b" ]; then awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf((a / b >= 10) ? "%.0f" : "%.2f", a / b); else print "-" }'; else echo "-"; fi
}
row() { # measure key target label
  printf '| %s | %s | %s | %s | %s |\n' "$4" "$3" "$(summary "$results/ours.$1.$2")" \
    "$(summary "$results/$other.$1.$2")" "$(ratio "$1.$2")"
}

echo
echo "== medians of $REPEATS runs (min–max)"
if [ "$other" = base ]; then
  echo "| measure | target | ours | base ($BASE_FLSIGNAL) | ours/base |"
else
  echo "| measure | target | ours | fledger 0.10 | ours/fledger |"
fi
echo "|---|---|---|---|---|"
row handshakes handshakes_per_s "≥ 100× fledger" "handshakes/s, $HS_NODES nodes, $HS_IN_FLIGHT in flight"
row handshakes latency_p50_ms "" "handshake latency p50 (ms)"
row handshakes latency_p99_ms "" "handshake latency p99 (ms)"
row relay msgs_per_s "≥ 10× fledger" "relayed msgs/s, $RELAY_PAIRS pairs × $RELAY_WINDOW in flight"
row relay rtt_p99_ms "< 5 ms" "relay RTT p99 under that load (ms)"
row relay rtt_p50_ms "" "relay RTT p50 under that load (ms)"
row relay idle_rtt_p99_ms "" "relay RTT p99, one at a time (ms)"
row storm registered "all" "storm: nodes registered of $STORM_NODES (deadline ${STORM_DEADLINE} s)"
row storm seconds "< 10 s" "storm: seconds until all registered (or the deadline)"
row storm bytes_per_node "O(list cap)" "storm: bytes from the server per node"
row idle kib_per_node "≤ 10 KiB" "memory per idle authenticated node, $IDLE_NODES nodes (KiB)"
