#!/usr/bin/env python3
"""Floods a TURN service with first Allocate requests, one from each of N
fresh UDP sockets (so N sources), the way a spoofed flood would arrive,
and prints the server's resident memory before and after.

    ./target/release/flsignal --listen 127.0.0.1:18765 --stun-listen 127.0.0.1:13478 \
        --stun-rate-per-second 1000000 --stun-rate-burst 1000000 \
        --stun-global-rate-per-second 1000000 --stun-global-burst 1000000 &
    python3 scripts/turn_handshake_flood.py $! 127.0.0.1:13478 4096 20000

Each count is one round; RSS is read after each. The STUN budgets are
raised so that every request reaches TURN (they apply to TURN's first
requests too).
"""
import os
import socket
import struct
import sys
import time


def allocate_request():
    """A STUN Allocate request with REQUESTED-TRANSPORT UDP, no credentials."""
    attribute = struct.pack("!HHB3x", 0x0019, 4, 17)
    return struct.pack("!HHI", 0x0003, len(attribute), 0x2112A442) + os.urandom(12) + attribute


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def flood(server, count):
    open_sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.sendto(allocate_request(), server)
        open_sockets.append(sock)
        # Closed in batches: each stays bound (a distinct source) until
        # its request is out.
        if len(open_sockets) > 500:
            for sock in open_sockets:
                sock.close()
            open_sockets = []
    for sock in open_sockets:
        sock.close()
    time.sleep(0.5)


def main():
    pid = int(sys.argv[1])
    host, port = sys.argv[2].rsplit(":", 1)
    server = (host, int(port))
    print(f"before: {rss_kib(pid)} KiB")
    for count in sys.argv[3:]:
        flood(server, int(count))
        print(f"after {count} more sources: {rss_kib(pid)} KiB")


if __name__ == "__main__":
    main()
