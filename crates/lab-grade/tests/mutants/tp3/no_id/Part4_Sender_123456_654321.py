# Mutant: sends the typed text without the 6-byte ID in front.
import socket
import sys

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for line in sys.stdin:
    s.sendto(line.rstrip("\n").encode(), ("224.1.1.1", 5005))
