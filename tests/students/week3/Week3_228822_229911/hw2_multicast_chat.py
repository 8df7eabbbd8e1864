#!/usr/bin/env python3
"""Homework 2: multicast chat.

Every member joins the group; each line typed is sent to the group as "name: text", and the
messages of the others are shown as "[name@ip] text". The kernel hands a sender its own
datagrams back (IP_MULTICAST_LOOP is on by default, and other members may share the host), so
a member drops the messages that carry its own name and come from one of its own addresses.

    python3 hw2_multicast_chat.py --group 239.1.1.1 --port 5008 --name alice
"""
import argparse
import socket
import struct
import sys
import threading
import time


def own_addresses():
    addrs = {"127.0.0.1"}
    try:
        addrs.add(socket.gethostbyname(socket.gethostname()))
    except OSError:
        pass
    return addrs


def listen(sock, name, mine):
    while True:
        try:
            data, addr = sock.recvfrom(65535)
        except OSError:
            return
        message = data.decode("utf-8", errors="replace")
        sender, sep, text = message.partition(": ")
        if not sep:
            sender, text = "?", message
        # The loopback problem: our own datagrams come back to us. Skip them.
        if sender == name and addr[0] in mine:
            continue
        print(f"[{sender}@{addr[0]}] {text}", flush=True)


def main():
    parser = argparse.ArgumentParser(description="multicast chat")
    parser.add_argument("--group", default="239.1.1.1")
    parser.add_argument("--port", type=int, default=5008)
    parser.add_argument("--name", required=True)
    parser.add_argument("--ttl", type=int, default=1)
    args = parser.parse_args()

    recv_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    recv_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    recv_sock.bind(("", args.port))
    mreq = struct.pack("4s4s", socket.inet_aton(args.group), socket.inet_aton("0.0.0.0"))
    recv_sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)

    send_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    send_sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, args.ttl)

    threading.Thread(target=listen, args=(recv_sock, args.name, own_addresses()),
                     daemon=True).start()
    print(f"{args.name} joined {args.group}:{args.port}; type messages, Ctrl-D to leave",
          flush=True)
    try:
        for line in sys.stdin:
            line = line.rstrip("\n")
            if line:
                send_sock.sendto(f"{args.name}: {line}".encode("utf-8"),
                                 (args.group, args.port))
    except KeyboardInterrupt:
        pass
    time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
