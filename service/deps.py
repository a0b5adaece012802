"""FastAPI dependencies: settings, database session, job publisher, API key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from service.jobs.service import Publisher
from service.users.auth import require
from state.settings import Settings
from state.store import session_scope


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(settings: Annotated[Settings, Depends(get_settings)]) -> Iterator[Session]:
    with session_scope(settings.resolved_database_url) as session:
        yield session


def get_publisher(request: Request) -> Publisher:
    return request.app.state.publish


SettingsDep = Annotated[Settings, Depends(get_settings)]
# scope="function": the session commits (and closes) before the response is sent, so a database
# that fails at commit gives the client a 503, not a dropped connection after a 200.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
PublisherDep = Annotated[Publisher, Depends(get_publisher)]
# What changes state or computes: the submit scope (the API key, a user's token, or anyone
# while neither a key nor users are configured: see service.users).
ApiKey = Depends(require("submit"))
