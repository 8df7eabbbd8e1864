# Mutant: the part-2 PMU without TLS: the key and certificate are never used.
import socket

srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("", 5443))
srv.listen(5)
while True:
    conn, _ = srv.accept()
    conn.recv(1024)
    for i in range(1, 6):
        conn.send(f"This is PMU data {i}".encode())
    conn.close()
