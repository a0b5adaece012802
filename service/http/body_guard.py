"""Request bodies: a bounded time to arrive and, for JSON endpoints, a bounded size.

A pure ASGI middleware wrapping ``receive``: a client that sends a body slower than
``body_timeout_seconds`` gets a 408; a JSON body over ``max_json_body_bytes`` a 413 (before it
is read when it declares its length). Upload endpoints bound their own (larger) size.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

JSON_PREFIXES = ("/jobs", "/catalogues")  # JSON bodies only (POST /search bounds its own)


class BodyGuard:
    def __init__(self, app: ASGIApp, timeout_seconds: float, json_limit: int):
        self.app, self.timeout, self.json_limit = app, timeout_seconds, json_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        limit = self.json_limit if scope["path"].startswith(JSON_PREFIXES) else None
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if limit is not None and declared.isdigit() and int(declared) > limit:
            await _reply(
                send,
                413,
                f"request body too large: the limit is {limit} bytes "
                "(setting ASTROPT_MAX_JSON_BODY_BYTES)",
            )
            return
        await self.app(scope, self._guarded(receive, limit), send)

    def _guarded(self, receive: Receive, limit: int | None) -> Receive:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        received = 0
        done = False

        async def guarded_receive() -> Message:
            nonlocal received, done
            if done:  # after the body: waiting for a disconnect is not bounded
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError as exc:
                raise HTTPException(
                    408,
                    f"request body not received within {self.timeout:g} s "
                    "(setting ASTROPT_BODY_TIMEOUT_SECONDS)",
                ) from exc
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                done = not message.get("more_body", False)
                if limit is not None and received > limit:
                    raise HTTPException(
                        413,
                        f"request body too large: the limit is {limit} bytes "
                        "(setting ASTROPT_MAX_JSON_BODY_BYTES)",
                    )
            else:
                done = True
            return message

        return guarded_receive


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def reject_non_finite(constant: str) -> Any:
    """``json.loads(parse_constant=...)``: NaN and Infinity are not JSON."""
    raise ValueError(f"{constant} is not a number JSON allows; send a finite number")
