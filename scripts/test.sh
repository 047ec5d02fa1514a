#!/usr/bin/env bash
# Runs every test of the project, after installing what the tests need.
# This is the README's test command and what CI runs (.ci/run).
#
#   sudo bash scripts/test.sh
#
# Tests that need root, network namespaces or other system packages run
# for real when CI=true; on a laptop without them they skip with a message.
set -euo pipefail
cd "$(dirname "$0")/.."

# Machines here have 2 cores.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export RUST_BACKTRACE=1

# System packages the tests use: network namespaces (iproute2), real
# WireGuard in userspace, ping and iperf3 through the tunnel; chromium and
# node for the browser page's test; nats-server for the cluster tests
# (started by the tests themselves); iptables and coturn for the NAT and
# dead-path tests (masquerading routers, dropped links, a TURN relay);
# tcpdump to see that a full-size packet through a managed tunnel is one
# UDP datagram on the wire.
# Debian's npm only when no npm is there (a nodejs from elsewhere bundles
# its own, and the two conflict).
APT_PACKAGES=(iproute2 iputils-ping iptables wireguard-go wireguard-tools iperf3 chromium nodejs nats-server coturn tcpdump)
if ! command -v npm >/dev/null 2>&1; then
  APT_PACKAGES+=(npm)
fi
if ((${#APT_PACKAGES[@]})); then
  if [ "$(id -u)" = 0 ] && ! dpkg -s "${APT_PACKAGES[@]}" >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${APT_PACKAGES[@]}"
  elif [ "$(id -u)" != 0 ]; then
    echo "scripts/test.sh: not root; not installing ${APT_PACKAGES[*]} (tests that need them skip)" >&2
  fi
fi

echo "== format"
cargo fmt --all -- --check

echo "== npm"
# playwright-core for tests/tests/browser.rs, exactly as locked; it drives
# the system chromium and downloads no browser.
if command -v npm >/dev/null 2>&1; then
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix tests/browser --no-audit --no-fund
else
  echo "scripts/test.sh: no npm; the browser test skips" >&2
fi

echo "== build"
# The cross-process tests run the real binaries, so build them first.
cargo build --workspace --bins --locked

echo "== test"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
# One closing line for the whole run (cargo prints one per test binary,
# and the last is usually the empty doc-test run).
awk '/^test result:/ { passed += $4; failed += $6; ignored += $8 }
     END { printf "summary: %d passed, %d failed, %d skipped\n", passed, failed, ignored }' "$log"
exit "$status"
