#!/usr/bin/env python3
"""Homework 3: TCP tunnel with logging.

Each --listen ADDR:PORT is paired with the --target HOST:PORT at the same position, so one
process can run several tunnels. Every accepted client gets its own connection to the target and
two threads copy the bytes, one per direction; when one side stops sending, the tunnel passes
the half-close on with shutdown(SHUT_WR) and the other direction keeps flowing. Every event goes
to the log file with a timestamp, the connection id, the direction and byte counts.

    python3 hw3_tunnel.py --listen 0.0.0.0:9090 --target server:8080 --log tunnel.log
"""
import argparse
import itertools
import logging
import socket
import sys
import threading

log = logging.getLogger("tunnel")
ids = itertools.count(1)
ids_lock = threading.Lock()


def split_addr(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def pipe(cid, src, dst, direction, counts):
    total = 0
    while True:
        try:
            data = src.recv(65536)
        except OSError:
            break
        if not data:
            break
        try:
            dst.sendall(data)
        except OSError:
            break
        total += len(data)
    counts[direction] = total
    log.info("conn %d %s end of stream after %d bytes, half-close passed on", cid, direction, total)
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def handle(client, addr, target):
    with ids_lock:
        cid = next(ids)
    log.info("conn %d accepted from %s:%d, tunnel to %s:%d", cid, addr[0], addr[1], *target)
    try:
        server = socket.create_connection(target, timeout=5)
    except OSError as e:
        log.info("conn %d connect to %s:%d failed: %s; closing the client", cid, *target, e)
        client.close()
        return
    server.settimeout(None)
    log.info("conn %d connected to %s:%d", cid, *target)
    counts = {}
    threads = [
        threading.Thread(target=pipe, args=(cid, client, server, "client->server", counts),
                         daemon=True),
        threading.Thread(target=pipe, args=(cid, server, client, "server->client", counts),
                         daemon=True),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    server.close()
    log.info("conn %d closed: client->server %d bytes, server->client %d bytes", cid,
             counts.get("client->server", 0), counts.get("server->client", 0))


def serve(listen, target):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(listen)
    listener.listen(50)
    log.info("listening on %s:%d, forwarding to %s:%d", *listen, *target)
    while True:
        client, addr = listener.accept()
        threading.Thread(target=handle, args=(client, addr, target), daemon=True).start()


def main():
    parser = argparse.ArgumentParser(description="TCP tunnel with logging")
    parser.add_argument("--listen", action="append", type=split_addr, required=True)
    parser.add_argument("--target", action="append", type=split_addr, required=True)
    parser.add_argument("--log", default="tunnel.log")
    args = parser.parse_args()
    if len(args.listen) != len(args.target):
        parser.error("give one --target for each --listen")

    formatter = logging.Formatter("%(asctime)s %(message)s")
    for handler in (logging.FileHandler(args.log), logging.StreamHandler(sys.stdout)):
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(logging.INFO)

    servers = [threading.Thread(target=serve, args=pair, daemon=True)
               for pair in zip(args.listen, args.target)]
    for t in servers:
        t.start()
    try:
        for t in servers:
            t.join()
    except KeyboardInterrupt:
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
