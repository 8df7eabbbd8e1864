"""The chat-lab handout's server (milestone 1) as a student completes its skeleton; stdlib only.

One thread per client, a blocking recv(1024) taken as one message, and every relay done by the
sender's own thread with sendall() in a loop over all sockets (no queue, no hub). Messages go out
bare, with no newline, one call each, as the handout writes them. Two users of this one copy:

- the interop tests (tests/tests/chat_lab.rs) check that our chat-client copes with a server
  that does not frame its messages;
- `netlab-bench chat` measures it as the reference competitor of our chat-server.

The only changes to the skeleton: the blanks are filled in, its typos (`msq`, a missing `try:`)
fixed, the address and port come from the command line, the port it bound is printed (port 0
picks a free one), and prints are flushed (stdout is a pipe in the tests).

Usage: python3 chat_server.py [SERVER_IP] [PORT]   (defaults: this host's address, 5000)
"""
# Import necessary modules
import json
import socket
import sys
from threading import Thread

SERVER_IP = sys.argv[1] if len(sys.argv) > 1 else socket.gethostbyname(socket.gethostname())
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
# buffer size for receiving messages
RECV_BUFFER = 1024
# Dictionary for storing active Users
ACTIVE_USERS = {}  # Maps the name to the IP address
# Dictionary for storing active sockets
SOCKETS = {}  # Maps the socket to the name
# Create a server socket (TCP socket)
SERVER_SOCKET = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
SERVER_SOCKET.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
# bind the "SERVER_SOCKET" to the SERVER_IP and PORT
SERVER_SOCKET.bind((SERVER_IP, PORT))


# Main thread: accepting connections from clients and making
# a child thread for every client
def accept_incoming_connections():
    while True:
        # make the SERVER_SOCKET accept connection from a client
        client_socket, client_address = SERVER_SOCKET.accept()
        try:
            # recieve the first message from the client_socket
            name = client_socket.recv(RECV_BUFFER)
            name = name.decode("utf-8")
            # Storing the client name and its socket
            SOCKETS[client_socket] = name
            ACTIVE_USERS[name] = client_address[0]
            print(f"{name} with IP address:{client_address[0]}, has connected", flush=True)
            # Updating all clients of the current active users
            broadcast_active_users()
        except Exception:
            # close the client_socket if an error occurs
            client_socket.close()
            print("Error connecting to a client", flush=True)
        # Starting a thread for the connected client
        Thread(target=handle_client, args=(client_socket,)).start()


# Thread for handling connection to every client
def handle_client(client_socket):
    while True:
        try:
            # receive a message from the client_socket
            msg = client_socket.recv(RECV_BUFFER)
            msg = msg.decode("utf-8")
        except Exception:
            # handle broken socket connection (e.g. the client pressed ctrl+c)
            client_socket.close()
            del ACTIVE_USERS[SOCKETS[client_socket]]
            del SOCKETS[client_socket]
            broadcast_active_users()
            sys.exit()
        # len(msg) == 0 when exiting with KeyboardInterrupt (ctrl+c)
        if len(msg) == 0:
            client_socket.close()
            del ACTIVE_USERS[SOCKETS[client_socket]]
            del SOCKETS[client_socket]
            broadcast_active_users()
            sys.exit()
        else:
            # Attaching the name of sending client to msg
            msg = f"{SOCKETS[client_socket]}: {msg} "
            # Send the received msg to every client, except this client
            broadcast_msg(client_socket, msg)


# Function to send a message to every client, except the sending client
def broadcast_msg(sending_client, msg):
    msg = msg.encode("utf-8")
    for client_socket in list(SOCKETS):
        # exclude sending msg to the sending_client
        if client_socket != sending_client:
            try:
                # Send the msg to client_socket
                client_socket.sendall(msg)
            except Exception:
                client_socket.close()
                del ACTIVE_USERS[SOCKETS[client_socket]]
                del SOCKETS[client_socket]
                broadcast_active_users()


# Function to broadcast the current active users to all clients
def broadcast_active_users():
    active_users = "!" + json.dumps(ACTIVE_USERS)
    active_users = active_users.encode("utf-8")
    for client_socket in list(SOCKETS):
        try:
            # send "active_users" to client_socket
            client_socket.sendall(active_users)
        except Exception:
            client_socket.close()
            del ACTIVE_USERS[SOCKETS[client_socket]]
            del SOCKETS[client_socket]


if __name__ == "__main__":
    # Make the server listen for TCP connection requests
    # (5 maximum number of queued connections)
    SERVER_SOCKET.listen(5)
    print(f"Waiting for connection on port {SERVER_SOCKET.getsockname()[1]}...", flush=True)
    # starting the main thread and joining all child threads
    connection_threads = Thread(target=accept_incoming_connections)
    connection_threads.start()
    connection_threads.join()
    # after exiting from the main thread, close SERVER_SOCKET
    SERVER_SOCKET.close()
