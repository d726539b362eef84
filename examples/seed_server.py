"""The tutorial's own events, unchanged, on aioc's loop: only the loop is swapped.

``python examples/seed_server.py [port]``; try ``nc 127.0.0.1 8888``.
"""

import socket
import sys

import aioc


class Event:
    def _yield(self, loop, task):
        """register the callback"""
        raise NotImplementedError

    def _resume(self, loop, task):
        """handle the callback and put the task on the ready queue"""
        raise NotImplementedError


class ReadEvent(Event):
    def __init__(self, sock):
        self.sock = sock

    def _yield(self, loop, task):
        loop._read_wait(self.sock.fileno(), self, task)

    def _resume(self, loop, task):
        data = self.sock.recv(1024)
        loop._ready.append((task, data))


class AcceptEvent(Event):
    def __init__(self, sock):
        self.sock = sock

    def _yield(self, loop, task):
        loop._read_wait(self.sock.fileno(), self, task)

    def _resume(self, loop, task):
        r = self.sock.accept()
        loop._ready.append((task, r))


def handle_events(conn):
    while True:
        line = yield ReadEvent(conn)
        if not line:
            break
        print(line.decode("utf-8", "replace"), end="")
    conn.close()


def server_loop(loop, host, port):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(5)
    sock.setblocking(False)
    print("server starting...")
    while True:
        conn, a = yield AcceptEvent(sock)
        print("Got connection from ", a)
        loop.call_soon(handle_events(conn))


if __name__ == "__main__":
    loop = aioc.EventLoop()
    loop.call_soon(server_loop(loop, "127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 8888))
    try:
        loop.run_forever()
    except KeyboardInterrupt:
        loop.close()
