"""Week 3, exercise 3 / homework 3 as the handout's students write it: a TCP tunnel with one
thread per direction of every connection (recv, then sendall, until the source closes; the
half-close is passed on with shutdown(SHUT_WR)).

A competitor of `netlab-bench tunnel`. The design is the handout's; two things are set as
tcp-tunnel sets them, so that the comparison is about the relay and not about a default:
TCP_NODELAY on both sockets (a 1-byte message goes out at once) and recv(65536) (a full
loopback segment per call). No logging per connection: the benchmark measures the relay.

    python3 tunnel.py LISTEN_PORT TARGET_PORT      # 127.0.0.1:LISTEN_PORT -> 127.0.0.1:TARGET_PORT
"""
import socket
import sys
import threading


def pipe(src, dst):
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
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def handle(client, target):
    try:
        server = socket.create_connection(target, timeout=5)
    except OSError:
        client.close()
        return
    server.settimeout(None)
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    up = threading.Thread(target=pipe, args=(client, server), daemon=True)
    up.start()
    pipe(server, client)
    up.join()
    client.close()
    server.close()


def main():
    listen_port, target_port = int(sys.argv[1]), int(sys.argv[2])
    target = ("127.0.0.1", target_port)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", listen_port))
    listener.listen(1024)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=handle, args=(client, target), daemon=True).start()


if __name__ == "__main__":
    main()
