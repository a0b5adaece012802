"""FastAPI dependencies: settings, database session, job publisher, API key."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session

from service.jobs import Publisher
from state.settings import Settings
from state.store import session_scope

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False,
    description="Required on POST/DELETE endpoints when the service has ASTROPT_API_KEY set.",
)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(settings: Annotated[Settings, Depends(get_settings)]) -> Iterator[Session]:
    with session_scope(settings.resolved_database_url) as session:
        yield session


def get_publisher(request: Request) -> Publisher:
    return request.app.state.publish


def require_api_key(
    settings: Annotated[Settings, Depends(get_settings)],
    supplied: Annotated[str | None, Security(api_key_header)] = None,
) -> None:
    expected = settings.api_key.get_secret_value() if settings.api_key else ""
    if not expected:
        return
    if not supplied or not hmac.compare_digest(supplied.encode(), expected.encode()):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong API key: send it in the X-API-Key header",
            headers={"WWW-Authenticate": "APIKey"},
        )


SettingsDep = Annotated[Settings, Depends(get_settings)]
# scope="function": the session commits (and closes) before the response is sent, so a database
# that fails at commit gives the client a 503, not a dropped connection after a 200.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
PublisherDep = Annotated[Publisher, Depends(get_publisher)]
ApiKey = Depends(require_api_key)
