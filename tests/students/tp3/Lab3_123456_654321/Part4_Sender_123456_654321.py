# TP3 Part 4.2 - Active participation: send our opinion to the TV's multicast group.
# Group: 123456, 654321
#
# Reads lines from the keyboard (stdin) and sends each one to 224.1.1.1:5005 as
# b'123456' + text, the same format as the TV's messages. No group membership is needed to send
# (Q17); only the TTL says how far the datagram may go (1: this network).

import socket
import sys

GROUP = "224.1.1.1"
PORT = 5005
MY_ID = b"123456"


def main():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    print("type your message (at least 300 characters to get an answer), Ctrl-D to quit")
    for line in sys.stdin:
        text = line.rstrip("\n")
        if not text:
            continue
        s.sendto(MY_ID + text.encode(), (GROUP, PORT))
        print(f"sent {len(text)} characters to {GROUP}:{PORT}")
    s.close()


if __name__ == "__main__":
    main()
