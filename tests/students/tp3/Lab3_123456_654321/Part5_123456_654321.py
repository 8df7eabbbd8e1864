# TP3 Part 5 - WebSockets: the PDC as a WebSocket client (websocket-client module).
# Group: 123456, 654321
#
# Usage: python3 Part5_123456_654321.py CMD_short:0 | CMD_floodme
#
# Every PMU message is one WebSocket message, so on_message is called once per message and we
# just print it: no splitting as in part 2. The server closes the connection at the end.

import sys

import websocket

URL = "ws://tcpip.epfl.ch:5006"


def main():
    if len(sys.argv) != 2:
        print("usage: python3 Part5_123456_654321.py CMD_short:0|CMD_floodme")
        sys.exit(2)
    command = sys.argv[1]

    def on_open(ws):
        ws.send(command)

    def on_message(ws, message):
        # The server sends binary messages; decode them to text.
        if isinstance(message, bytes):
            message = message.decode()
        print(message)

    def on_error(ws, error):
        # Newer websocket-client versions also report the server's normal close (code 1000)
        # here: keep such notes off the messages, on stderr.
        print("websocket:", error, file=sys.stderr)

    app = websocket.WebSocketApp(URL, on_open=on_open, on_message=on_message, on_error=on_error)
    app.run_forever()


if __name__ == "__main__":
    main()
