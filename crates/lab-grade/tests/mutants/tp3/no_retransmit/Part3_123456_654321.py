# Mutant: sends RESET:20 once on each family and gives up after one timeout.
import socket

for family in (socket.AF_INET, socket.AF_INET6):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(1)
    try:
        addr = socket.getaddrinfo("tcpip.epfl.ch", 5004, family, socket.SOCK_DGRAM)[0][4]
        s.sendto(b"RESET:20", addr)
        data, _ = s.recvfrom(1024)
        print(data.decode())
        break
    except OSError:
        print("no answer")
