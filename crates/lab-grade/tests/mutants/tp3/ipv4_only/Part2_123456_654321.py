# Mutant: an IPv4 socket where the handout requires IPv6 (the PMU listens on IPv6 only).
import socket
import sys

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.connect(("tcpip.epfl.ch", 5003))
s.send(sys.argv[1].encode())
buf = b""
while True:
    data = s.recv(4096)
    if not data:
        break
    buf += data
print(buf.decode().replace("This is PMU data", "\nThis is PMU data").strip())
s.close()
