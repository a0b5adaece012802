"""Who is asking: the :class:`Principal` of a request, and the scope dependencies routes use."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from state.settings import Settings
from state.store import session_scope
from state.store.users import any_users, user_for_token

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False,
    description="The service's shared key (ASTROPT_API_KEY): required on POST/DELETE endpoints when "
    "set; once users exist it acts as an admin token.",
)
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
    return HTTPException(status_code=status.HTTP_401_UNAUTHORIZED, detail=detail,
                         headers={"WWW-Authenticate": "Bearer"})


def _users_configured(request: Request, settings: Settings) -> bool:
    """Asked on every request; a user added with the CLI takes effect within a few seconds."""
    cache = request.app.state.__dict__.setdefault("users_configured", {})
    now = time.monotonic()
    if cache.get("at", -1e9) + settings.users_cache_seconds < now:
        with session_scope(settings.resolved_database_url) as session:
            cache.update(value=any_users(session), at=now)
    return bool(cache["value"])


def principal(
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
    if credentials is not None:
        with session_scope(settings.resolved_database_url) as session:
            user = user_for_token(session, credentials.credentials)
            found = None if user is None else Principal(user.name, frozenset(user.scopes.split(",")), "token")
        if found is None:
            raise _unauthorised("unknown or revoked token: ask an admin for one (astropt users add)")
        return found
    if not _users_configured(request, settings):
        # Today's behaviour: reads are open; writes need the key when one is set (see require).
        return Principal(None, ALL_SCOPES if not expected else frozenset({"read"}), "open")
    if settings.public_reads:
        return Principal(None, frozenset({"read"}), "public")
    raise _unauthorised("this service has users: send your token as 'Authorization: Bearer <token>'")


def require(scope: str):  # noqa: ANN201 (a FastAPI dependency factory)
    def check(request: Request, who: Annotated[Principal, Depends(principal)]) -> Principal:
        if scope not in who.scopes:
            if who.how in ("open", "public"):
                raise _unauthorised("missing or wrong API key: send it in the X-API-Key header"
                                    if who.how == "open" else "this endpoint needs a token with the "
                                    f"'{scope}' scope")
            raise HTTPException(status_code=status.HTTP_403_FORBIDDEN,
                                detail=f"your token lacks the '{scope}' scope (it has {sorted(who.scopes)})")
        request.state.principal = who  # the audit log's "who" (service.users.audit)
        return who

    return check


Reader = Annotated[Principal, Depends(require("read"))]
Submitter = Annotated[Principal, Depends(require("submit"))]
Admin = Annotated[Principal, Depends(require("admin"))]
