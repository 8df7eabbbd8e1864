"""The grader's handout-style chat client (lab-grade chat, part "server").

It speaks to a student's chatserver.py exactly as the handout's chatclient.py does: one TCP
connection to port 5000, the name as the first message, each room message in one send(), no
framing, no newline. Unlike the handout's client it never crashes on what it reads: user lists
('!' + a JSON object) are cut out of the stream by brace matching, so a list that arrives glued
to another message is still seen, and it reports everything as one JSON object per line on
stdout for the grader.

    python3 handout_chatclient.py HOST PORT

stdin: the first line is the name; every further line is sent to the room as it is; end of
input closes the connection (the client leaves). stdout events, in the kit's vocabulary
(docs/events.md):
    {"event": "connect"}  {"event": "users", "users": {...}}  {"event": "room", "text": "..."}
    {"event": "close", "closed_by": "server" | "client"}
    {"event": "connect_failed", "why": "..."}  {"event": "send_failed", "why": "..."}
"""
import json
import socket
import sys
import threading

RECV_BUFFER = 1024
OUT = threading.Lock()


def emit(**event):
    with OUT:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


def object_end(text, start):
    """Index just past the JSON object starting at text[start] ('{'), or -1 if incomplete."""
    depth = 0
    in_string = False
    escaped = False
    for i in range(start, len(text)):
        c = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return -1


def split(pending):
    """Events in the text received so far, and what is left to wait for."""
    events = []
    while pending:
        at = pending.find("!{")
        if at > 0:
            text = pending[:at].strip()
            if text:
                events.append({"event": "room", "text": text})
            pending = pending[at:]
            continue
        if at == 0:
            end = object_end(pending, 1)
            if end < 0:
                break
            try:
                users = json.loads(pending[1:end])
                events.append({"event": "users", "users": users})
            except ValueError:
                events.append({"event": "room", "text": pending[:end]})
            pending = pending[end:]
            continue
        text = pending.strip()
        if text:
            events.append({"event": "room", "text": text})
        pending = ""
    return events, pending


def receive(sock):
    pending = ""
    while True:
        try:
            data = sock.recv(RECV_BUFFER)
        except OSError as e:
            emit(event="close", closed_by="server", why=str(e))
            return
        if not data:
            emit(event="close", closed_by="server")
            return
        pending += data.decode("utf-8", errors="replace")
        events, pending = split(pending)
        for e in events:
            emit(**e)


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    name = sys.stdin.readline().strip()
    try:
        sock = socket.create_connection((host, port), timeout=10)
        sock.settimeout(None)
    except OSError as e:
        emit(event="connect_failed", why=f"connect to {host}:{port}: {e}")
        return 1
    emit(event="connect")
    sock.send(name.encode("utf-8"))
    threading.Thread(target=receive, args=(sock,), daemon=True).start()
    for line in sys.stdin:
        line = line.rstrip("\n")
        if line:
            try:
                sock.send(line.encode("utf-8"))
            except OSError as e:
                emit(event="send_failed", why=f"send: {e}")
    # shutdown() sends the FIN now: a close() alone would wait for the reader thread's recv.
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
    emit(event="close", closed_by="client")
    return 0


if __name__ == "__main__":
    sys.exit(main())
