# Mutant: binds the port but never joins 224.1.1.1 (no IP_ADD_MEMBERSHIP).
import socket

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", 5005))
while True:
    data, addr = s.recvfrom(1024)
    print(data[:6].decode(), data[6:].decode())
