"""TP3 part 5 as the handout's students write it: the websocket-client library asks the
WebSocket PMU server for CMD_floodme and receives until the server closes.

The reference competitor of `netlab-bench ws`. Prints one JSON line with the messages and bytes
received and the seconds from connect to close (the benchmark itself times the whole process).

    python3 ws_flood.py ws://127.0.0.1:5006 [CMD_floodme]
"""
import json
import sys
import time

import websocket  # pip install websocket-client

url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:5006"
command = sys.argv[2] if len(sys.argv) > 2 else "CMD_floodme"

start = time.monotonic()
ws = websocket.create_connection(url)
ws.send(command)
messages = 0
size = 0
while True:
    try:
        msg = ws.recv()
    except websocket.WebSocketConnectionClosedException:
        break
    if not msg:  # close frame: recv() returns an empty payload
        break
    messages += 1
    size += len(msg)
ws.close()
print(json.dumps({"messages": messages, "bytes": size, "seconds": time.monotonic() - start}))
