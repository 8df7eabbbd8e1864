"""Handout-style chat client (the chat-lab handout, milestone 2): the completed skeleton, stdlib only.

Kept as the handout writes it -- the name and every message are sent bare (no newline), the
server is read with recv(1024) -- so the interop tests check that our chat-server serves the
students' client. The addresses come from the command line; the name is the first line of
stdin (the skeleton's input()); prints are flushed; a user list is also printed when it changes.

Usage: python3 -u chat_client.py SERVER_IP PORT CLIENT_IP UDP_PORT
"""
import json
import socket
import sys
from threading import Thread

SERVER_IP = sys.argv[1]
PORT = int(sys.argv[2])
CLIENT_IP = sys.argv[3]
UDP_PORT = int(sys.argv[4])
RECV_BUFFER = 1024
TCP_SOCKET = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
TCP_SOCKET.bind((CLIENT_IP, 0))
UDP_SOCKET = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
UDP_SOCKET.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
UDP_SOCKET.bind((CLIENT_IP, UDP_PORT))
ACTIVE_USERS = None


def update_active_users(msg):
    global ACTIVE_USERS
    ACTIVE_USERS = json.loads(msg[1:])
    print(f"active users: {ACTIVE_USERS}", flush=True)


def get_name_from_ip_address(ip_address):
    name_list = [name for name, ip in ACTIVE_USERS.items() if ip == ip_address]
    name = name_list[0] if len(name_list) else "Non-registered"
    return name


def connect_and_listen():
    try:
        TCP_SOCKET.connect((SERVER_IP, PORT))
        name = input("First enter your name to register it in the server: ")
        name = name.encode("utf-8")
        TCP_SOCKET.send(name)
    except Exception:
        print("could not connect to chat server...", flush=True)
    print("Connection Established!", flush=True)
    Thread(target=receive_tcp, daemon=True).start()
    Thread(target=receive_udp, daemon=True).start()
    Thread(target=send).start()


def receive_tcp():
    while True:
        try:
            msg = TCP_SOCKET.recv(RECV_BUFFER)
            msg = msg.decode("utf-8")
            if msg[0] == "!":
                update_active_users(msg)
            else:
                print(f"incoming msg from chatserver ({msg})", flush=True)
        except OSError:
            TCP_SOCKET.close()
            sys.exit()


def receive_udp():
    while True:
        msg, address = UDP_SOCKET.recvfrom(RECV_BUFFER)
        ip_address = address[0]
        sending_client = get_name_from_ip_address(ip_address)
        print(f"Incoming msg (P2P) from {sending_client}:{msg.decode('utf-8')}", flush=True)


def send():
    while True:
        try:
            usr_input = input(">")
        except EOFError:
            TCP_SOCKET.close()
            return
        if usr_input == "#ls":
            print(ACTIVE_USERS, flush=True)
        elif (len(usr_input) > 0) and (usr_input[0] == "@"):
            temp = usr_input.split(":")
            receiving_client = temp[0][1:].strip()
            msg = ":".join(temp[1:])
            msg = msg.encode("utf-8")
            if receiving_client in ACTIVE_USERS:
                ip_address = ACTIVE_USERS[receiving_client]
                UDP_SOCKET.sendto(msg, (ip_address, UDP_PORT))
            else:
                print(f"{receiving_client} is not registered", flush=True)
        elif len(usr_input) > 0:
            msg = usr_input
            msg = msg.encode("utf-8")
            TCP_SOCKET.send(msg)


if __name__ == "__main__":
    connection_threads = Thread(target=connect_and_listen)
    connection_threads.start()
    connection_threads.join()
