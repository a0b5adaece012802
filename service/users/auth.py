"""Who is asking: the :class:`Principal` of a request, and the scope dependencies routes use."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

import anyio
from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.users.context import set_principal
from state.settings import Settings
from state.store import session_scope
from state.store.users import any_users, user_for_token

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="The service's shared key (ASTROPT_API_KEY): required on POST/DELETE endpoints when "
    "set; once users exist it acts as an admin token.",
)
TOKEN_COOKIE = "astropt_token"
# Documented on every protected route (the app adds them to its routers).
TOKEN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "No token, or an unknown or revoked one (a service with users), or a wrong "
        'API key: `{"detail": "..."}`'
    },
    403: {"description": "The token lacks the scope this endpoint needs"},
}
bearer = HTTPBearer(auto_error=False, description="A user's token (`astropt users add`).")


@dataclass(frozen=True)
class Principal:
    """``name`` None: the shared key, or anyone while no user is configured (sees everything)."""

    name: str | None
    scopes: frozenset[str]
    how: str  # "token", "api_key", "open" (no users configured), "public" (public reads)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    @property
    def owner_filter(self) -> str | None:
        """The owner whose jobs this principal may see; None: everyone's."""
        return None if self.is_admin or self.name is None else self.name

    def may_see(self, owner: str | None) -> bool:
        return self.owner_filter is None or owner == self.owner_filter


ALL_SCOPES = frozenset({"read", "submit", "admin"})


def _unauthorised(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": "Bearer"},
    )


def _users_configured(request: Request, settings: Settings) -> bool:
    """Asked on every request; a user added with the CLI takes effect within a few seconds."""
    cache = request.app.state.__dict__.setdefault("users_configured", {})
    now = time.monotonic()
    if cache.get("at", -1e9) + settings.users_cache_seconds < now:
        with session_scope(settings.resolved_database_url) as session:
            cache.update(value=any_users(session), at=now)
    return bool(cache["value"])


def _user_principal(settings: Settings, token: str) -> Principal | None:
    with session_scope(settings.resolved_database_url) as session:
        user = user_for_token(session, token)
        return (
            None
            if user is None
            else Principal(user.name, frozenset(user.scopes.split(",")), "token")
        )


async def principal(
    request: Request,
    key: Annotated[str | None, Security(api_key_header)] = None,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None,
) -> Principal:
    settings: Settings = request.app.state.settings
    expected = settings.api_key.get_secret_value() if settings.api_key else ""
    if key is not None and expected:
        if hmac.compare_digest(key.encode(), expected.encode()):
            return Principal(None, ALL_SCOPES, "api_key")
        raise _unauthorised("missing or wrong API key: send it in the X-API-Key header")
    users = await anyio.to_thread.run_sync(_users_configured, request, settings)
    token = credentials.credentials if credentials is not None else None
    if token is None and request.method in ("GET", "HEAD"):
        # Dashboard pages are navigations (no Authorization header): the token the dashboard
        # saved rides in a SameSite=Strict cookie, for reads only.
        token = request.cookies.get(TOKEN_COOKIE)
    if token is not None and users:  # without users no token can be valid: ignored, as before
        found = await anyio.to_thread.run_sync(_user_principal, settings, token)
        if found is None:
            raise _unauthorised(
                "unknown or revoked token: ask an admin for one (astropt users add)"
            )
        return found
    if not users:
        # Today's behaviour: reads are open; writes need the key when one is set (see require).
        return Principal(None, ALL_SCOPES if not expected else frozenset({"read"}), "open")
    if settings.public_reads:
        return Principal(None, frozenset({"read"}), "public")
    raise _unauthorised(
        "this service has users: send your token as 'Authorization: Bearer <token>'"
    )


def require(scope: str):  # noqa: ANN201 (a FastAPI dependency factory)
    async def check(request: Request, who: Annotated[Principal, Depends(principal)]) -> Principal:
        if scope not in who.scopes:
            if who.how in ("open", "public"):
                raise _unauthorised(
                    "missing or wrong API key: send it in the X-API-Key header"
                    if who.how == "open"
                    else f"this endpoint needs a token with the '{scope}' scope"
                )
            raise HTTPException(
                status_code=status.HTTP_403_FORBIDDEN,
                detail=f"your token lacks the '{scope}' scope (it has {sorted(who.scopes)})",
            )
        request.state.principal = who  # the audit log's "who" (service.users.audit)
        set_principal(who)  # the service layer's owner filter (service.users.context)
        return who

    return check


Reader = Annotated[Principal, Depends(require("read"))]
Submitter = Annotated[Principal, Depends(require("submit"))]
Admin = Annotated[Principal, Depends(require("admin"))]


async def ui_reader(
    request: Request,
    key: Annotated[str | None, Security(api_key_header)] = None,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None,
) -> Principal:
    """The dashboard's pages: like the read scope, but a browser without a token is sent to
    /ui/login (and comes back) instead of getting a JSON 401."""
    try:
        who = await principal(request, key, credentials)
    except HTTPException as exc:
        if exc.status_code != status.HTTP_401_UNAUTHORIZED:
            raise
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(
            status_code=status.HTTP_303_SEE_OTHER,
            detail="sign in first",
            headers={"Location": f"/ui/login?next={quote(target, safe='')}"},
        ) from exc
    request.state.principal = who
    set_principal(who)
    return who
