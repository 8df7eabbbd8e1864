"""Handout-style chat server (seed 002, milestone 1): the completed skeleton, stdlib only.

Kept as the handout writes it -- messages are sent bare, with no newline, one send() each -- so
the interop tests check that our chat-client copes with a server that does not frame its
messages. Only the address and port come from the command line, and prints are flushed.

Usage: python3 -u chat_server.py SERVER_IP PORT   (PORT 0 = any; the chosen port is printed)
"""
import json
import socket
import sys
from threading import Thread

SERVER_IP = sys.argv[1] if len(sys.argv) > 1 else socket.gethostbyname(socket.gethostname())
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
RECV_BUFFER = 1024
ACTIVE_USERS = {}  # Maps the name to the IP address
SOCKETS = {}  # Maps the socket to the name
SERVER_SOCKET = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
SERVER_SOCKET.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
SERVER_SOCKET.bind((SERVER_IP, PORT))


def accept_incoming_connections():
    while True:
        client_socket, client_address = SERVER_SOCKET.accept()
        try:
            name = client_socket.recv(RECV_BUFFER)
            name = name.decode("utf-8")
            SOCKETS[client_socket] = name
            ACTIVE_USERS[name] = client_address[0]
            print(f"{name} with IP address:{client_address[0]}, has connected", flush=True)
            broadcast_active_users()
        except Exception:
            client_socket.close()
            print("Error connecting to a client", flush=True)
        Thread(target=handle_client, args=(client_socket,), daemon=True).start()


def handle_client(client_socket):
    while True:
        try:
            msg = client_socket.recv(RECV_BUFFER)
            msg = msg.decode("utf-8")
        except Exception:
            client_socket.close()
            del ACTIVE_USERS[SOCKETS[client_socket]]
            del SOCKETS[client_socket]
            broadcast_active_users()
            sys.exit()
        if len(msg) == 0:
            client_socket.close()
            del ACTIVE_USERS[SOCKETS[client_socket]]
            del SOCKETS[client_socket]
            broadcast_active_users()
            sys.exit()
        else:
            msg = f"{SOCKETS[client_socket]}: {msg} "
            broadcast_msg(client_socket, msg)


def broadcast_msg(sending_client, msg):
    msg = msg.encode("utf-8")
    for client_socket in list(SOCKETS):
        if client_socket != sending_client:
            try:
                client_socket.send(msg)
            except Exception:
                client_socket.close()
                del ACTIVE_USERS[SOCKETS[client_socket]]
                del SOCKETS[client_socket]
                broadcast_active_users()


def broadcast_active_users():
    active_users = "!" + json.dumps(ACTIVE_USERS)
    active_users = active_users.encode("utf-8")
    for client_socket in list(SOCKETS):
        try:
            client_socket.send(active_users)
        except Exception:
            client_socket.close()
            del ACTIVE_USERS[SOCKETS[client_socket]]
            del SOCKETS[client_socket]


if __name__ == "__main__":
    SERVER_SOCKET.listen(5)
    print(f"Waiting for connection on port {SERVER_SOCKET.getsockname()[1]}...", flush=True)
    connection_threads = Thread(target=accept_incoming_connections, daemon=True)
    connection_threads.start()
    connection_threads.join()
    SERVER_SOCKET.close()
