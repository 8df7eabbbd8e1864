#!/usr/bin/env python3
"""TP3 Part 4.1 -- multicast receiver for the Swisscom Internet TV (stdlib only).

Usage: python3 student_tv_receiver.py GROUP PORT [COUNT] [INTERFACE_IP]

Joins GROUP on INTERFACE_IP (default: any), prints each datagram as "<ID>: <text>" (the first
6 bytes are the sender's ID), and stops after COUNT datagrams (default: never) or 10 s of silence.
"""
import socket
import struct
import sys


def main():
    if len(sys.argv) < 3:
        print("usage: student_tv_receiver.py GROUP PORT [COUNT] [INTERFACE_IP]", file=sys.stderr)
        sys.exit(2)
    group, port = sys.argv[1], int(sys.argv[2])
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    iface = sys.argv[4] if len(sys.argv) > 4 else "0.0.0.0"

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", port))
    # IP_ADD_MEMBERSHIP: the kernel sends an IGMP report and accepts the group's datagrams.
    mreq = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(iface))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    print("joined %s:%d" % (group, port), flush=True)
    s.settimeout(10)

    received = 0
    while count == 0 or received < count:
        try:
            data, _ = s.recvfrom(65536)
        except socket.timeout:
            break
        received += 1
        sender_id = data[:6].decode(errors="replace")
        text = data[6:].decode(errors="replace")
        print("%s: %s" % (sender_id, text), flush=True)


if __name__ == "__main__":
    main()
