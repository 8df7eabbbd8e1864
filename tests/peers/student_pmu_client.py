#!/usr/bin/env python3
"""TP3 Part 2 -- PDC client, written the way the handout asks (IPv6 TCP socket, stdlib only).

Usage: python3 student_pmu_client.py HOST PORT COMMAND
  COMMAND is CMD_short:0, CMD_short:1 or CMD_floodme.

Prints every PMU message on its own line (CMD_short) or the whole text (CMD_floodme), then the
number of bytes received; the number of recv() calls (Q13) goes to stderr.
"""
import socket
import sys

PREFIX = "This is PMU data "


def main():
    if len(sys.argv) != 4:
        print("usage: student_pmu_client.py HOST PORT COMMAND", file=sys.stderr)
        sys.exit(2)
    host, port, command = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    # The handout requires IPv6 sockets: resolve the host for AF_INET6 only.
    family, socktype, proto, _, address = socket.getaddrinfo(
        host, port, socket.AF_INET6, socket.SOCK_STREAM)[0]
    s = socket.socket(family, socktype, proto)
    s.settimeout(30)
    s.connect(address)
    s.send(command.encode())

    data = b""
    recv_calls = 0
    pending = ""
    while True:
        chunk = s.recv(4096)
        recv_calls += 1
        if not chunk:  # the server closed: we have everything (Q11)
            break
        data += chunk
        if command.lower().startswith("cmd_short"):
            # TCP is a stream: messages arrive glued together or cut anywhere, so split on the
            # prefix and print a message only once the next one has started.
            pending += chunk.decode()
            parts = pending.split(PREFIX)
            for part in parts[1:-1]:
                print(PREFIX + part, flush=True)
            pending = PREFIX + parts[-1] if len(parts) > 1 else pending
    s.close()

    if command.lower().startswith("cmd_short"):
        if pending:
            print(pending)
    else:
        print(data.decode(), end="")
        if not data.endswith(b"\n"):
            print()
    print("Received %d bytes" % len(data))
    print("recv() was called %d times" % recv_calls, file=sys.stderr)


if __name__ == "__main__":
    main()
