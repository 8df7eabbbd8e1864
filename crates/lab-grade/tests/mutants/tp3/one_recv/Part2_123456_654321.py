# Mutant: a single recv(), as if one send() were one message.
import socket
import sys

s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.connect(("tcpip.epfl.ch", 5003))
s.send(sys.argv[1].encode())
data = s.recv(1024)
print(data.decode())
s.close()
