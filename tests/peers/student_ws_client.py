#!/usr/bin/env python3
"""TP3 Part 5 -- WebSocket PDC client with the websocket-client package, as the handout suggests.

Usage: python3 student_ws_client.py ws://HOST:PORT COMMAND

Sends COMMAND once the connection is open, prints each message on its own line (binary messages
are decoded), and when the server closes prints how many times on_message was called (Q20, Q21).
"""
import sys

import websocket

calls = 0


def on_open(ws):
    ws.send(sys.argv[2])


def on_message(ws, message):
    global calls
    calls += 1
    if isinstance(message, bytes):
        message = message.decode()
    print(message, flush=True)


def on_error(ws, error):
    print("error: %s" % error, file=sys.stderr)


def on_close(ws, status, reason):
    print("on_message was called %d times" % calls, flush=True)


def main():
    if len(sys.argv) != 3:
        print("usage: student_ws_client.py ws://HOST:PORT COMMAND", file=sys.stderr)
        sys.exit(2)
    app = websocket.WebSocketApp(sys.argv[1], on_open=on_open, on_message=on_message,
                                 on_error=on_error, on_close=on_close)
    app.run_forever()


if __name__ == "__main__":
    main()
