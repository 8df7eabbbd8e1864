# TP3 Part 2 - Packetization: the PDC (a TCP client over IPv6).
# Group: 123456, 654321
#
# Usage: python3 Part2_123456_654321.py CMD_short:0 | CMD_short:1 | CMD_floodme
#
# The PMU sends "This is PMU data i" for i = 1..n with no separator, so TCP may deliver them
# glued together or cut anywhere. We keep what we received in a buffer and print a message when
# the next one starts (or when the server closes). We know we have everything when recv()
# returns b'' (the server closed the connection, Q11).

import socket
import sys

HOST = "tcpip.epfl.ch"
PORT = 5003
PREFIX = "This is PMU data "


def main():
    if len(sys.argv) != 2:
        print("usage: python3 Part2_123456_654321.py CMD_short:0|CMD_short:1|CMD_floodme")
        sys.exit(2)
    command = sys.argv[1]

    # The handout asks for an IPv6 socket: look up the IPv6 address of the server only.
    try:
        infos = socket.getaddrinfo(HOST, PORT, socket.AF_INET6, socket.SOCK_STREAM)
    except socket.gaierror as e:
        print("cannot resolve", HOST, "over IPv6:", e)
        sys.exit(1)
    family, socktype, proto, _, address = infos[0]

    s = socket.socket(family, socktype, proto)
    s.settimeout(30)  # a blocking socket, but never wait forever
    try:
        s.connect(address)
        s.sendall(command.encode())

        received = b""
        recv_calls = 0
        while True:
            data = s.recv(4096)
            recv_calls += 1
            if not data:  # the server closed the connection: that was everything
                break
            received += data
            if command.lower().startswith("cmd_short"):
                received = print_complete_messages(received)
    except OSError as e:
        print("connection problem:", e)
        sys.exit(1)
    finally:
        s.close()

    if command.lower().startswith("cmd_short"):
        # The last message has no successor: it is complete now that the server has closed.
        if received:
            print(received.decode())
    else:
        print(received.decode())


def print_complete_messages(buffer):
    """Prints every message followed by the start of another one; returns the rest."""
    text = buffer.decode()
    parts = text.split(PREFIX)
    if text.startswith(PREFIX):
        # parts[0] is empty; every part but the last is followed by another message.
        for part in parts[1:-1]:
            print(PREFIX + part)
        return (PREFIX + parts[-1]).encode()
    # Not a PMU message (an ERROR line from the server, say): keep it until the end.
    return buffer


if __name__ == "__main__":
    main()
