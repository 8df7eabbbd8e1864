# TP3 Part 4.1 - Listening to the Swisscom Internet TV program (multicast receiver).
# Group: 123456, 654321
#
# Joins the group 224.1.1.1 on port 5005 and prints every datagram: the first 6 bytes are the
# sender's ID (b'swcmTV' for the TV), the rest is the text. Ctrl-C to stop.

import socket
import struct

GROUP = "224.1.1.1"
PORT = 5005


def main():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", PORT))
    # IP_ADD_MEMBERSHIP: the kernel joins the group (IGMP report) on the default interface.
    membership = struct.pack("4s4s", socket.inet_aton(GROUP), socket.inet_aton("0.0.0.0"))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    print(f"listening to {GROUP}:{PORT}")

    try:
        while True:
            data, address = s.recvfrom(65535)
            sender_id = data[:6].decode(errors="replace")
            text = data[6:].decode(errors="replace")
            print(f"{sender_id}: {text}")
    except KeyboardInterrupt:
        pass
    finally:
        s.close()


if __name__ == "__main__":
    main()
