# TP3 Part 6 - The PMU of part 2 behind TLS (the server; this is what is graded).
# Group: 123456, 654321
#
# Our certificate 123456_cert.pem was signed by the course CA from our CSR 123456.csr; the key is
# 123456_key.pem. Both are read from the current directory. One-way authentication: only the
# server shows a certificate. The protocol is the one of part 2: CMD_short:d gives n messages
# "This is PMU data i", one send() each, d seconds apart, then we close.

import random
import re
import socket
import ssl
import time

PORT = 5443
CERT = "123456_cert.pem"
KEY = "123456_key.pem"


def serve_client(conn, address):
    command = conn.recv(1024).decode(errors="replace").strip()
    match = re.fullmatch(r"CMD_short:(\d+(?:\.\d+)?)", command, re.IGNORECASE)
    if not match:
        conn.sendall(b"ERROR: unknown command")
        print(f"{address[0]}: unknown command {command!r}")
        return
    delay = float(match.group(1))
    n = random.randint(5, 15)
    for i in range(1, n + 1):
        conn.send(f"This is PMU data {i}".encode())
        if i < n:
            time.sleep(delay)
    print(f"{address[0]}: {command} -> sent {n} messages")


def main():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CERT, KEY)

    server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 clients too
    server.bind(("", PORT))
    server.listen(5)
    print(f"PMU (TLS) listening on port {PORT}")

    try:
        while True:
            client, address = server.accept()
            # A client that connects and says nothing must not block us forever: the handshake
            # and every recv() give up after 10 seconds.
            client.settimeout(10)
            try:
                conn = context.wrap_socket(client, server_side=True)
            except (ssl.SSLError, OSError) as e:
                print(f"{address[0]}: TLS handshake failed: {e}")
                client.close()
                continue
            try:
                serve_client(conn, address)
            except (ssl.SSLError, OSError) as e:
                print(f"{address[0]}: {e}")
            finally:
                conn.close()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


if __name__ == "__main__":
    main()
