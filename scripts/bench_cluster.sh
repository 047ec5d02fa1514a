#!/usr/bin/env bash
# Cluster benchmark (BENCHMARKS.md): PeerSetup relay RTT and frames/s
# within one flsignal instance vs across two instances of a three-instance
# cluster over one nats-server; then handshakes/s with one plain instance
# vs three clustered ones. Everything on loopback; stops what it started.
#
#   cargo build --release -j2 -p flsignal -p e2e
#   bash scripts/bench_cluster.sh [flload relay flags, e.g. --pairs 8 --messages 20000]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-target}/release"
nats_port=14300
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

nats-server -a 127.0.0.1 -p "$nats_port" >/dev/null 2>&1 &
pids+=($!)
sleep 0.3
# The per-connection rate limit would otherwise be what is measured.
# STUN off: four instances on one machine cannot all bind UDP 3478 (the
# default), and an instance that cannot bind does not start.
limits=(--rate-per-second 1000000 --rate-burst 1000000 --max-connections-per-ip 20000 --stun-listen off
  --announce-rate-per-second 1000000 --announce-rate-burst 1000000)
for port in 18801 18802 18803; do
  "$bin/flsignal" --listen "127.0.0.1:$port" --nats "nats://127.0.0.1:$nats_port" "${limits[@]}" >/dev/null 2>&1 &
  pids+=($!)
done
"$bin/flsignal" --listen 127.0.0.1:18800 "${limits[@]}" >/dev/null 2>&1 &
pids+=($!)
sleep 2

echo "== relay within one clustered instance"
"$bin/flload" relay --url ws://127.0.0.1:18801/ --to-url ws://127.0.0.1:18801/ "$@"
echo "== relay across two instances"
"$bin/flload" relay --url ws://127.0.0.1:18801/ --to-url ws://127.0.0.1:18802/ "$@"

echo "== handshakes: 3000 nodes on one plain instance"
"$bin/flload" idle --url ws://127.0.0.1:18800/ --nodes 3000 --source-ips 8
echo "== handshakes: 3 x 1000 nodes on three clustered instances at once"
for port in 18801 18802 18803; do
  "$bin/flload" idle --url "ws://127.0.0.1:$port/" --nodes 1000 --source-ips 8 &
done
wait -n; wait -n; wait -n
