"""The audit log: every mutating request (who, what, when, the answer), written after it is answered."""

from __future__ import annotations

import logging
import re

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from state.store import session_scope
from state.store.users import record

log = logging.getLogger(__name__)
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
TARGET = re.compile(r"^/(?:jobs|catalogues|datasets)/([^/]{1,64})")


class AuditLog:
    """Pure ASGI middleware; a store that fails here never fails the request (it is logged)."""

    def __init__(self, app: ASGIApp, database_url: str):
        self.app = app
        self.database_url = database_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            await self.app(scope, receive, send)
            return
        answered: dict[str, int] = {}

        async def spy(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, spy)
        finally:
            await anyio.to_thread.run_sync(self._write, scope, answered.get("status", 500))

    def _write(self, scope: Scope, status: int) -> None:
        who = (scope.get("state") or {}).get("principal")
        path = scope.get("path", "")
        match = TARGET.match(path)
        try:
            with session_scope(self.database_url) as session:
                record(
                    session,
                    getattr(who, "name", None) or getattr(who, "how", None),
                    scope["method"],
                    path,
                    status,
                    match.group(1) if match else None,
                )
        except Exception:
            log.exception("could not write the audit log entry for %s %s", scope["method"], path)
