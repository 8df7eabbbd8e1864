#!/usr/bin/env python3
"""A minimal PMU server written the way a TP3 student (or the handout's course team) would.

TP3 part 2: the PDC sends one command without terminator, `CMD_short:d` or `CMD_floodme`.
- `CMD_short:d`: n messages `This is PMU data i`, each with its own send() call, d seconds apart,
  no separator; then close.
- `CMD_floodme`: one large text sent with a single sendall(); then close.
- anything else: `ERROR: ...` and close.

Used by tests/tests/tp3_clients.rs to check that our Rust PDC interoperates with a Python PMU.
Standard library only. Prints `listening on [ADDR]:PORT` once bound (port 0 picks a free one) and
serves clients one after the other until killed (or --clients N).
"""

import argparse
import socket
import time


def flood_text(size):
    """Same numbered lines as labnet::wire::pmu::flood_text, so a test can compare bytes."""
    out = bytearray()
    line = 1
    while len(out) < size:
        out += ("PMU flood line %07d: the quick brown fox jumps over the lazy dog\n" % line).encode()
        line += 1
    return bytes(out[:size])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=5003)
    p.add_argument("--messages", type=int, default=10)
    p.add_argument("--flood-bytes", type=int, default=65536)
    p.add_argument("--clients", type=int, default=0, help="exit after N clients (0 = never)")
    args = p.parse_args()

    # IPv6 socket that also accepts IPv4 clients (as ::ffff:a.b.c.d), like the course server.
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", args.port))
    s.listen(16)
    print("listening on [::]:%d" % s.getsockname()[1], flush=True)

    flood = flood_text(args.flood_bytes)
    served = 0
    while args.clients == 0 or served < args.clients:
        conn, addr = s.accept()
        served += 1
        conn.settimeout(10)
        try:
            cmd = conn.recv(1024).decode(errors="replace").strip()
            print("command %r from %s" % (cmd, addr[0]), flush=True)
            if cmd.lower().startswith("cmd_short:"):
                d = float(cmd.split(":", 1)[1])
                for i in range(1, args.messages + 1):
                    conn.send(("This is PMU data %d" % i).encode())
                    if i < args.messages:
                        time.sleep(d)
            elif cmd.lower() == "cmd_floodme":
                conn.sendall(flood)
            else:
                conn.sendall(("ERROR: unknown command %r" % cmd).encode())
        except (OSError, ValueError) as e:
            print("session failed: %s" % e, flush=True)
        finally:
            conn.close()


if __name__ == "__main__":
    main()
