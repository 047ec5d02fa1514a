#!/usr/bin/env bash
# Signalling benchmark (BENCHMARKS.md, "Signalling against fledger and
# matchbox"): our flsignal, matchbox_server 0.15 and fledger's flsignal
# 0.10 side by side in one run, each in its own network namespace with
# `flload` beside it, a fresh server for every measurement. Measures
# alternate between the servers within each round; every measurement is
# repeated, and medians with min–max and the ratios ours/theirs are printed
# at the end. Needs root (namespaces).
#
#   sudo bash scripts/bench_signalling.sh            # 3 rounds
#   sudo REPEATS=5 bash scripts/bench_signalling.sh
#   sudo MEASURES="relay handshakes" bash scripts/bench_signalling.sh
#
# The other servers are never built inside this repository:
#   cargo install matchbox_server --version '~0.15' --root /opt/matchbox
#   export MATCHBOX_SERVER=/opt/matchbox/bin/matchbox_server
#   cargo install flsignal --version 0.10.0 --root /opt/fledger
#   export FLEDGER_FLSIGNAL=/opt/fledger/bin/flsignal
# Without them only ours is measured. BASELINE_FLSIGNAL=/path/to/flsignal
# adds another build of ours as "baseline", alternated with this one.
set -euo pipefail
cd "$(dirname "$0")/.."

REPEATS="${REPEATS:-3}"
MEASURES="${MEASURES:-handshakes handshakes_listed handshakes_small relay storm idle}"
# Against matchbox: many handshakes, many in flight.
HS_NODES="${HS_NODES:-2000}" HS_IN_FLIGHT="${HS_IN_FLIGHT:-50}"
# Against fledger, whose pushes make a handshake cost O(N²) bytes.
HS_SMALL_NODES="${HS_SMALL_NODES:-200}" HS_SMALL_IN_FLIGHT="${HS_SMALL_IN_FLIGHT:-20}"
RELAY_PAIRS="${RELAY_PAIRS:-20}" RELAY_WINDOW="${RELAY_WINDOW:-8}" RELAY_MESSAGES="${RELAY_MESSAGES:-10000}"
STORM_NODES="${STORM_NODES:-10000}" STORM_IN_FLIGHT="${STORM_IN_FLIGHT:-1000}" STORM_DEADLINE="${STORM_DEADLINE:-30}"
IDLE_NODES="${IDLE_NODES:-15000}"
# fledger's server may take all the memory it can get in the storm (it
# pushes the full node list to every node on every join); it gets this
# much address space (KiB) and is killed by its own allocator beyond.
FLEDGER_MEMORY_KIB="${FLEDGER_MEMORY_KIB:-6000000}"
FLEDGER_FLSIGNAL="${FLEDGER_FLSIGNAL:-$(cd .. && pwd)/fledger-bin/bin/flsignal}"
MATCHBOX_SERVER="${MATCHBOX_SERVER:-$(cd .. && pwd)/matchbox-bin/bin/matchbox_server}"
# matchbox logs every connection at info level by default; measured at its
# best, with errors only.
MATCHBOX_LOG="${MATCHBOX_LOG:-error}"
BASELINE_FLSIGNAL="${BASELINE_FLSIGNAL:-}"

CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -j2 -p flsignal -p e2e --bin flsignal --bin flload
bin="$CARGO_TARGET_DIR/release"
bin="$(cd "$bin" && pwd)"

servers=(ours)
if [ -n "$BASELINE_FLSIGNAL" ]; then servers+=(baseline); fi
if [ -x "$MATCHBOX_SERVER" ]; then
  servers+=(matchbox)
else
  echo "matchbox_server not found at $MATCHBOX_SERVER: not measured." >&2
  echo "  cargo install matchbox_server --version '~0.15' --root /opt/matchbox" >&2
  echo "  export MATCHBOX_SERVER=/opt/matchbox/bin/matchbox_server" >&2
fi
if [ -x "$FLEDGER_FLSIGNAL" ]; then
  servers+=(fledger)
else
  echo "fledger's flsignal not found at $FLEDGER_FLSIGNAL: not measured." >&2
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
# say, and none should meet anything else on this machine.
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

# Whether server $1 takes part in measure $2: matchbox has no node list
# to ask for and is not loaded with storms; fledger's server cannot take
# thousands of handshakes nor hold idle nodes.
takes_part() {
  case "$1:$2" in
    matchbox:handshakes_listed | matchbox:handshakes_small | matchbox:storm) return 1 ;;
    fledger:handshakes | fledger:handshakes_listed | fledger:idle) return 1 ;;
    *) return 0 ;;
  esac
}

# Starts a fresh server of kind $1 in its namespace (fledger's leaks
# sockets, so no measurement inherits another's state).
start_server() {
  local server="$1" ns="${ns_of[$1]}"
  case "$server" in
    ours | baseline)
      local flsignal="$bin/flsignal"
      if [ "$server" = baseline ]; then flsignal="$BASELINE_FLSIGNAL"; fi
      # The per-connection rate limit, per-IP cap and per-source announce
      # rate would otherwise be what is measured: all load comes from a
      # few loopback addresses.
      ip netns exec "$ns" bash -c "ulimit -n 20000; exec \"\$@\"" _ \
        "$flsignal" --listen "127.0.0.1:$port" --stun-listen off --max-connections-per-ip 20000 \
        --rate-per-second 1000000 --rate-burst 1000000 \
        --announce-rate-per-second 1000000 --announce-rate-burst 1000000 >/dev/null 2>&1 &
      ;;
    matchbox)
      ip netns exec "$ns" env RUST_LOG="$MATCHBOX_LOG" bash -c "ulimit -n 20000; exec \"\$@\"" _ \
        "$MATCHBOX_SERVER" "127.0.0.1:$port" >/dev/null 2>&1 &
      ;;
    fledger)
      ip netns exec "$ns" bash -c "ulimit -n 20000; ulimit -v $FLEDGER_MEMORY_KIB; exec \"\$@\"" _ \
        "$FLEDGER_FLSIGNAL" -q >/dev/null 2>&1 &
      ;;
  esac
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

# The flload arguments of measure $1 for server $2.
flload_args() {
  local protocol=fledger
  if [ "$2" = matchbox ]; then protocol=matchbox; fi
  case "$1" in
    handshakes)
      echo handshakes --nodes "$HS_NODES" --in-flight "$HS_IN_FLIGHT" --source-ips 4 --protocol "$protocol" \
        --list-request false ;;
    handshakes_listed) echo handshakes --nodes "$HS_NODES" --in-flight "$HS_IN_FLIGHT" --source-ips 4 ;;
    handshakes_small) echo handshakes --nodes "$HS_SMALL_NODES" --in-flight "$HS_SMALL_IN_FLIGHT" --source-ips 4 ;;
    relay)
      echo relay --pairs "$RELAY_PAIRS" --window "$RELAY_WINDOW" --messages "$RELAY_MESSAGES" \
        --rtt-samples 500 --protocol "$protocol" ;;
    storm)
      echo storm --nodes "$STORM_NODES" --in-flight "$STORM_IN_FLIGHT" --source-ips 8 \
        --deadline "$STORM_DEADLINE" --settle 1 ;;
    idle) echo idle --nodes "$IDLE_NODES" --source-ips 8 --protocol "$protocol" ;;
  esac
}

# run SERVER MEASURE: one measurement on a fresh server; the fields of
# flload's result line are appended to $results/SERVER.MEASURE.KEY.
run() {
  local server="$1" measure="$2"
  start_server "$server"
  local out
  # shellcheck disable=SC2046 # flload_args is a list of words
  out="$(ip netns exec "${ns_of[$server]}" bash -c "ulimit -n 20000; exec \"\$@\"" _ \
    "$bin/flload" $(flload_args "$measure" "$server") --url "$url" --server-pid "$server_pid" 2>&1)" ||
    echo "flload failed ($server $measure)" >&2
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
  for measure in $MEASURES; do
    for server in "${servers[@]}"; do
      if takes_part "$server" "$measure"; then run "$server" "$measure"; fi
    done
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
# ratio KEY OTHER: median of ours over median of OTHER's.
ratio() {
  local a b
  a="$(median "$results/ours.$1")" b="$(median "$results/$2.$1")"
  if [ -n "$a" ] && [ -n "$b" ]; then
    awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf((a / b >= 10) ? "%.0f" : "%.2f", a / b); else print "-" }'
  else echo "-"; fi
}
others=()
for server in baseline matchbox fledger; do
  if [[ " ${servers[*]} " == *" $server "* ]]; then others+=("$server"); fi
done
row() { # measure key target label
  local line="| $4 | $3 | $(summary "$results/ours.$1.$2")"
  for other in "${others[@]}"; do line+=" | $(summary "$results/$other.$1.$2")"; done
  for other in "${others[@]}"; do line+=" | $(ratio "$1.$2" "$other")"; done
  echo "$line |"
}

echo
echo "== medians of $REPEATS runs (min–max); ratios are ours / theirs"
header="| measure | target | ours" rule="|---|---|---"
for other in "${others[@]}"; do header+=" | $other" rule+="|---"; done
for other in "${others[@]}"; do header+=" | ours/$other" rule+="|---"; done
echo "$header |"
echo "$rule|"
hs="$HS_NODES handshakes, $HS_IN_FLIGHT in flight"
row handshakes server_cpu_us_per_handshake "≤ matchbox" "server CPU per handshake (µs), $hs"
row handshakes handshakes_per_s "" "handshakes/s, $hs"
row handshakes latency_p99_ms "" "handshake latency p99 (ms), $hs"
row handshakes_listed server_cpu_us_per_handshake "" "the same with ListIDsRequest after the Announce (µs)"
row handshakes_small handshakes_per_s "≥ 100× fledger" "handshakes/s, $HS_SMALL_NODES nodes, $HS_SMALL_IN_FLIGHT in flight, list asked"
row handshakes_small latency_p50_ms "" "  its latency p50 (ms)"
row handshakes_small latency_p99_ms "" "  its latency p99 (ms)"
row handshakes_small server_cpu_us_per_handshake "" "  server CPU per handshake (µs)"
row relay server_cpu_us_per_frame "≤ 0.5× matchbox" "server CPU per relayed frame (µs), $RELAY_PAIRS pairs × $RELAY_WINDOW in flight"
row relay msgs_per_s "≥ 10× fledger" "relayed msgs/s, $RELAY_PAIRS pairs × $RELAY_WINDOW in flight"
row relay rtt_p99_ms "< 5 ms" "relay RTT p99 under that load (ms)"
row relay rtt_p50_ms "" "relay RTT p50 under that load (ms)"
row relay idle_rtt_p99_ms "" "relay RTT p99, one at a time (ms)"
row storm registered "all" "storm: nodes registered of $STORM_NODES (deadline ${STORM_DEADLINE} s)"
row storm seconds "< 10 s" "storm: seconds until all registered (or the deadline)"
row storm bytes_per_node "O(list cap)" "storm: bytes from the server per node"
row idle kib_per_node "≤ 10 KiB" "memory per idle connection, $IDLE_NODES nodes (KiB)"
