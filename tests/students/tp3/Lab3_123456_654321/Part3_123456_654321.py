# TP3 Part 3 - UDP packet transmission: the PDC resets the PMU's clock.
# Group: 123456, 654321
#
# The PMU runs on IPv4 or on IPv6 depending on the time of day, and drops some requests on
# purpose. So every attempt sends RESET:20 over both IPv4 and IPv6, then waits up to 1 second for
# OFFSET=X on either socket, and retransmits until an answer comes.

import select
import socket
import sys
import time

HOST = "tcpip.epfl.ch"
PORT = 5004
COMMAND = b"RESET:20"
TIMEOUT = 1.0  # seconds to wait for the acknowledgement before retransmitting
MAX_ATTEMPTS = 100


def open_socket(family):
    """A UDP socket and the server's address for one family, or None if HOST has none."""
    try:
        infos = socket.getaddrinfo(HOST, PORT, family, socket.SOCK_DGRAM)
    except socket.gaierror:
        return None
    address = infos[0][4]
    return socket.socket(family, socket.SOCK_DGRAM), address


def main():
    sockets = {}
    for name, family in (("IPv4", socket.AF_INET), ("IPv6", socket.AF_INET6)):
        opened = open_socket(family)
        if opened is not None:
            sockets[name] = opened
    if not sockets:
        print("cannot resolve", HOST)
        sys.exit(1)

    for attempt in range(1, MAX_ATTEMPTS + 1):
        for name, (s, address) in sockets.items():
            try:
                s.sendto(COMMAND, address)
            except OSError as e:
                print(f"could not send over {name}: {e}")
        print(f"attempt {attempt}: sent {COMMAND.decode()} over {' and '.join(sockets)}")

        deadline = time.time() + TIMEOUT
        while True:
            left = deadline - time.time()
            if left <= 0:
                break
            by_socket = {s: name for name, (s, _) in sockets.items()}
            readable, _, _ = select.select(list(by_socket), [], [], left)
            for s in readable:
                try:
                    data, sender = s.recvfrom(1024)
                except OSError:
                    continue  # e.g. an ICMP error from the family that is not served now
                reply = data.decode(errors="replace")
                if reply.startswith("OFFSET="):
                    when = time.strftime("%Y-%m-%d %H:%M:%S")
                    print(f"acknowledged at {when} over {by_socket[s]} by {sender[0]}: {reply}")
                    print(f"{attempt} attempt(s) before the acknowledgement")
                    return
                print(f"unexpected answer over {by_socket[s]}: {reply}")
        # Nothing within the timeout: lost (or the wrong family); send again.

    print(f"no acknowledgement after {MAX_ATTEMPTS} attempts")
    sys.exit(1)


if __name__ == "__main__":
    main()
