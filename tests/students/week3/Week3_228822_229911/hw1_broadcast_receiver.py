#!/usr/bin/env python3
"""Homework 1: enhanced broadcast receiver.

Extends ex01_udp_broadcast.py's receiver: every datagram is printed as it arrives, and when
nothing has arrived for --timeout seconds the receiver stops and prints its statistics
(packets, bytes, and how many packets came from each source).

    python3 hw1_broadcast_receiver.py recv --port 5007 --timeout 10
"""
import argparse
import socket
import sys
import time


def receive(port, timeout):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    # Bind to all interfaces: a socket bound to a unicast address gets no broadcasts.
    sock.bind(("", port))
    # recvfrom() gives up after `timeout` seconds without a datagram: that is the inactivity
    # timeout, restarted by every datagram.
    sock.settimeout(timeout)
    print(f"Listening for broadcasts on UDP port {port} (stop after {timeout:g} s of silence)")

    packets = 0
    total_bytes = 0
    sources = {}  # ip -> [packets, bytes]
    first = last = None
    try:
        while True:
            try:
                data, addr = sock.recvfrom(65535)
            except socket.timeout:
                print(f"No datagram for {timeout:g} s: stopping.")
                break
            now = time.time()
            first = first or now
            last = now
            packets += 1
            total_bytes += len(data)
            entry = sources.setdefault(addr[0], [0, 0])
            entry[0] += 1
            entry[1] += len(data)
            stamp = time.strftime("%H:%M:%S", time.localtime(now))
            text = data.decode("utf-8", errors="replace")
            print(f"[{stamp}] {len(data)} bytes from {addr[0]}:{addr[1]}: {text}")
    except KeyboardInterrupt:
        print("Interrupted.")
    finally:
        sock.close()

    print("===== Statistics =====")
    print(f"Packets received: {packets}")
    print(f"Bytes received: {total_bytes}")
    if packets:
        print(f"Reception lasted {last - first:.3f} s")
        print("Source distribution:")
        for ip, (n, b) in sorted(sources.items(), key=lambda kv: -kv[1][0]):
            print(f"  {ip}: {n} packets ({100.0 * n / packets:.1f}%), {b} bytes")


def main():
    parser = argparse.ArgumentParser(description="UDP broadcast receiver with statistics")
    sub = parser.add_subparsers(dest="mode", required=True)
    recv = sub.add_parser("recv", help="receive broadcasts")
    recv.add_argument("--port", type=int, default=5007)
    recv.add_argument("--timeout", type=float, default=10.0,
                      help="seconds without a datagram before stopping")
    args = parser.parse_args()
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    receive(args.port, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
