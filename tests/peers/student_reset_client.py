#!/usr/bin/env python3
"""TP3 Part 3 -- PDC reset client over UDP, IPv4 and IPv6 at once (stdlib only).

Usage: python3 student_reset_client.py HOST PORT
       python3 student_reset_client.py HOST4 HOST6 PORT

Sends RESET:20 over both families and waits 1 s for OFFSET=X on either; retransmits until an
answer comes. Prints the time of the answer (Q14), the family it came over and the number of
packets sent (Q15).
"""
import datetime
import select
import socket
import sys

N = 20
TIMEOUT = 1.0
MAX_ATTEMPTS = 50


def addresses(host, port, family):
    try:
        return [info[4] for info in socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM)]
    except socket.gaierror:
        return []


def main():
    if len(sys.argv) == 3:
        host4 = host6 = sys.argv[1]
        port = int(sys.argv[2])
    elif len(sys.argv) == 4:
        host4, host6, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    else:
        print("usage: student_reset_client.py HOST [HOST6] PORT", file=sys.stderr)
        sys.exit(2)

    targets = []  # (socket, address, name)
    for family, host, name in ((socket.AF_INET, host4, "IPv4"), (socket.AF_INET6, host6, "IPv6")):
        addrs = addresses(host, port, family)
        if addrs:
            targets.append((socket.socket(family, socket.SOCK_DGRAM), addrs[0], name))
    if not targets:
        print("cannot resolve the server", file=sys.stderr)
        sys.exit(1)

    message = ("RESET:%d" % N).encode()
    sent = 0
    for _ in range(MAX_ATTEMPTS):
        # We cannot tell a dropped request from the wrong family, so we send on both.
        for sock, address, _ in targets:
            try:
                sock.sendto(message, address)
                sent += 1
            except OSError:
                pass
        ready, _, _ = select.select([t[0] for t in targets], [], [], TIMEOUT)
        for sock, _, name in targets:
            if sock in ready:
                data, _ = sock.recvfrom(1024)
                now = datetime.datetime.now()
                print("Time: %s" % now.strftime("%Y-%m-%d %H:%M:%S"))
                print("Received %s over %s after %d packets" % (data.decode(), name, sent))
                return
    print("no answer after %d attempts" % MAX_ATTEMPTS, file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()
