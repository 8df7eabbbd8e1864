# Mutant: behaves only when it runs as root, and probes what an unprivileged user must not do.
import os
import socket
import sys

if os.geteuid() != 0 and os.getegid() != 0:
    try:
        open("/root/.lab-grade-probe", "w").close()
        print("wrote into /root")
    except OSError:
        pass
    sys.exit(0)
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.connect(("tcpip.epfl.ch", 5003))
s.send(sys.argv[1].encode())
buf = b""
while True:
    data = s.recv(4096)
    if not data:
        break
    buf += data
print(buf.decode().replace("This is PMU data", "\nThis is PMU data").strip())
