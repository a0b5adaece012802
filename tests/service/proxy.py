"""A TCP proxy a test can cut or silence, in front of Redis or PostgreSQL.

``forward``: bytes pass both ways. ``silent``: connections are accepted (new and existing) and
nothing is forwarded or answered, like a hung broker. ``cut``: every connection is closed and
new ones are refused (the listening socket is closed), like a dead server; ``forward()``
listens again on the same port.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from contextlib import suppress


class Proxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.mode = "forward"
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener = self._listen(0)
        self.port = int(self._listener.getsockname()[1])
        self._start_accepting()

    def url(self, scheme: str, path: str = "") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def forward(self) -> None:
        with self._lock:
            if self._listener is None:
                self._listener = self._listen(self.port)
                self._start_accepting()
            self.mode = "forward"

    def silence(self) -> None:
        self.mode = "silent"

    def cut(self) -> None:
        with self._lock:
            self.mode = "cut"
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            listener.close()
        for sock in sockets:
            _close(sock)

    def close(self) -> None:
        self.cut()

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
        return listener

    def _start_accepting(self) -> None:
        listener = self._listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by cut()
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _close(client)
            return
        with self._lock:
            if self.mode == "cut":
                _close(client), _close(upstream)
                return
            self._sockets |= {client, upstream}
        peers = {client: upstream, upstream: client}
        try:
            while self.mode != "cut":
                if self.mode == "silent":  # accepted; nothing read, nothing answered
                    time.sleep(0.1)
                    continue
                readable, _, _ = select.select(list(peers), [], [], 0.2)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            _close(client), _close(upstream)


def _close(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with suppress(OSError):
        sock.close()
