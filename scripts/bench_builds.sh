#!/usr/bin/env bash
# Server CPU per relayed frame and per handshake of several builds of
# flsignal (and matchbox_server), alternated: each round runs every
# measure on every build in turn, on a fresh server, so that a busy moment
# of the shared machine hits all of them alike. Prints medians with
# min–max of the server's CPU (utime + stime, and each apart) and the
# ratio of each build's median to the first build's. Needs root (a
# network namespace). BENCHMARKS.md says which runs used it.
#
#   sudo bash scripts/bench_builds.sh main=/path/to/flsignal this=target/release/flsignal
#   sudo ROUNDS=7 MEASURES="relay handshakes" bash scripts/bench_builds.sh a=… b=… \
#       matchbox=/work/matchbox-bin/bin/matchbox_server
#
# A build named `matchbox` is matchbox_server and takes part in `relay`
# and `handshakes` only (it has no node list to ask for). flsignal runs
# with the per-connection, per-IP and per-source limits lifted, as in
# scripts/bench_signalling.sh. FLLOAD is the load generator (default:
# target/release/flload, built if missing).
#
# Measures (flload, 4 source addresses):
#   relay              20 pairs × 8 in flight × RELAY_MESSAGES echoes each way
#   handshakes         HS_NODES nodes, 50 in flight, no ListIDsRequest
#   handshakes_listed  the same with fledger's ListIDsRequest after the Announce
#   datagrams          DG_PAIRS relayed pairs (flsignal only), 1485-byte relay
#                      frames at 1 Mbit/s each way for DG_DURATION seconds
#                      (not in the default MEASURES)
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-5}"
MEASURES="${MEASURES:-relay handshakes handshakes_listed}"
RELAY_MESSAGES="${RELAY_MESSAGES:-20000}"
HS_NODES="${HS_NODES:-4000}"
DG_PAIRS="${DG_PAIRS:-100}"
DG_DURATION="${DG_DURATION:-10}"
FLLOAD="${FLLOAD:-target/release/flload}"
if [ "$#" -lt 1 ]; then
  sed -n '2,26p' "$0" >&2
  exit 2
fi
if [ ! -x "$FLLOAD" ]; then
  cargo build --release -j2 -p e2e --bin flload
fi
FLLOAD="$(cd "$(dirname "$FLLOAD")" && pwd)/$(basename "$FLLOAD")"

names=()
declare -A path_of
for build in "$@"; do
  name="${build%%=*}" path="${build#*=}"
  [ -x "$path" ] || { echo "not an executable: $path" >&2; exit 2; }
  names+=("$name")
  path_of[$name]="$(cd "$(dirname "$path")" && pwd)/$(basename "$path")"
done

ns="flbuilds-$$"
results="$(mktemp -d)"
server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
cleanup() {
  stop_server
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$results"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
port=8765

start_server() { # name
  local path="${path_of[$1]}"
  if [ "$1" = matchbox ]; then
    ip netns exec "$ns" env RUST_LOG=error bash -c 'ulimit -n 20000; exec "$@"' _ \
      "$path" "127.0.0.1:$port" >/dev/null 2>&1 &
  else
    ip netns exec "$ns" bash -c 'ulimit -n 20000; exec "$@"' _ \
      "$path" --listen "127.0.0.1:$port" --stun-listen off --max-connections-per-ip 20000 \
      --rate-per-second 1000000 --rate-burst 1000000 \
      --announce-rate-per-second 1000000 --announce-rate-burst 1000000 >/dev/null 2>&1 &
  fi
  server_pid=$!
  for _ in $(seq 100); do
    if [ -n "$(ip netns exec "$ns" ss -Hltn "sport = :$port")" ]; then return 0; fi
    sleep 0.05
  done
  echo "$1 did not start" >&2
  return 1
}

flload_args() { # measure name
  local protocol=fledger
  if [ "$2" = matchbox ]; then protocol=matchbox; fi
  case "$1" in
    relay) echo relay --pairs 20 --window 8 --messages "$RELAY_MESSAGES" --rtt-samples 0 --protocol "$protocol" ;;
    handshakes) echo handshakes --nodes "$HS_NODES" --in-flight 50 --list-request false --protocol "$protocol" ;;
    handshakes_listed) echo handshakes --nodes "$HS_NODES" --in-flight 50 ;;
    datagrams) echo datagrams --pairs "$DG_PAIRS" --rate-kbit 1000 --duration "$DG_DURATION" --in-flight 50 ;;
  esac
}

unit_of() { case "$1" in relay | datagrams) echo frame ;; *) echo handshake ;; esac; }

for round in $(seq "$ROUNDS"); do
  for measure in $MEASURES; do
    for name in "${names[@]}"; do
      if [ "$name" = matchbox ] && [ "$measure" != relay ] && [ "$measure" != handshakes ]; then continue; fi
      start_server "$name"
      # shellcheck disable=SC2046 # a list of words
      out="$(ip netns exec "$ns" bash -c 'ulimit -n 20000; exec "$@"' _ \
        "$FLLOAD" $(flload_args "$measure" "$name") --url "ws://127.0.0.1:$port/" --source-ips 4 \
        --server-pid "$server_pid" 2>&1)" || echo "flload failed ($name $measure)" >&2
      stop_server
      line="$(echo "$out" | grep '^result ' | tail -1 || true)"
      unit="$(unit_of "$measure")"
      for key in server_cpu_us_per_$unit server_user_us_per_$unit server_system_us_per_$unit; do
        value="$(echo "$line" | tr ' ' '\n' | sed -n "s/^$key=//p")"
        if [ -n "$value" ]; then echo "$value" >>"$results/$name.$measure.${key%%_us_per_*}"; fi
      done
      echo "round $round $measure $name: $(echo "$line" | tr ' ' '\n' | grep -E "^server_(cpu|user|system)_us_per" | tr '\n' ' ')"
    done
  done
done

summary() { # file: "median (min–max)"
  [ -s "$1" ] || { echo "-"; return; }
  sort -g "$1" | awk '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.4g (%.4g–%.4g)", m, v[1], v[NR] }'
}
median() {
  [ -s "$1" ] || return 0
  sort -g "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo
echo "== server CPU in µs, medians of $ROUNDS alternated rounds (min–max); ratio = median / ${names[0]}'s"
echo "| measure | build | CPU | user | system | ratio |"
echo "|---|---|---|---|---|---|"
for measure in $MEASURES; do
  first="$(median "$results/${names[0]}.$measure.server_cpu")"
  for name in "${names[@]}"; do
    file="$results/$name.$measure"
    [ -s "$file.server_cpu" ] || continue
    ratio="$(awk -v a="$(median "$file.server_cpu")" -v b="$first" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
    echo "| $measure per $(unit_of "$measure") | $name | $(summary "$file.server_cpu") | $(summary "$file.server_user") | $(summary "$file.server_system") | $ratio |"
  done
done
