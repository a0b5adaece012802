"""The Python client repeats a read, never a write, when the server drops the connection unanswered
(a kept-alive connection the server closed just as the request went out)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from astropt.client import Client, ClientError

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class DropsFirstRequest:
    """A real TCP server: the first request is read and its connection closed unanswered; later
    ones are answered with ``{}``. Records each request line it received."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(data.split(b"\r\n", 1)[0].decode())
                if len(self.requests) > 1:
                    conn.sendall(ANSWER)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture()
def server() -> Iterator[DropsFirstRequest]:
    server = DropsFirstRequest()
    yield server
    server.close()


def test_a_dropped_read_is_sent_again_once(server: DropsFirstRequest) -> None:
    with Client(server.url, api_key="k") as client:
        assert client.get("abc") == {}
    assert server.requests == ["GET /jobs/abc HTTP/1.1"] * 2


def test_a_dropped_write_is_not_repeated(server: DropsFirstRequest) -> None:
    with Client(server.url, api_key="k") as client, pytest.raises(ClientError) as caught:
        client.cancel("abc")
    assert caught.value.status == 0 and "cannot reach the service" in str(caught.value)
    assert server.requests == ["POST /jobs/abc/cancel HTTP/1.1"]
