"""Users, their tokens and quotas, and the audit log (docs/operations.md, "Users").

A token is shown once, when the user is added; the store keeps its SHA-256 only (tokens are
32 random bytes, so an unsalted hash is as strong as the token). Scopes: ``read`` (see one's
own jobs and catalogues), ``submit`` (also submit, cancel, resume and delete them), ``admin``
(everything, everyone's, and the audit log).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from typing import Any, Literal, cast, get_args

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from state.store.models import AuditEntry, User, utcnow

Scope = Literal["read", "submit", "admin"]
SCOPES: tuple[str, ...] = get_args(Scope)
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
TOKEN_PREFIX = "apt_"


class UserError(ValueError):
    """A user that cannot be added or changed as asked (the message says why)."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def implied_scopes(scopes: Sequence[str]) -> list[str]:
    """admin implies submit, submit implies read."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise UserError(f"unknown scope(s) {unknown}: choose from {list(SCOPES)}")
    level = max((SCOPES.index(s) for s in scopes), default=0)
    return list(SCOPES[: level + 1])


def add_user(
    session: Session,
    name: str,
    scopes: Sequence[str],
    *,
    max_active_jobs: int | None = None,
    disk_quota_gb: float | None = None,
    device_hours_quota: float | None = None,
) -> str:
    """Create a user and return its token (the only time it is seen)."""
    if not USER_NAME.match(name):
        raise UserError(
            f"user name {name!r}: 1-64 letters, digits and _.@- (starting with a letter or digit)"
        )
    if session.get(User, name) is not None:
        raise UserError(f"user {name!r} exists; revoke it first or choose another name")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        User(
            name=name,
            token_hash=hash_token(token),
            scopes=",".join(implied_scopes(scopes)),
            max_active_jobs=max_active_jobs,
            disk_quota_gb=disk_quota_gb,
            device_hours_quota=device_hours_quota,
        )
    )
    session.flush()
    return token


def revoke_user(session: Session, name: str) -> bool:
    result = session.execute(
        update(User).where(User.name == name, User.revoked_at.is_(None)).values(revoked_at=utcnow())
    )
    return cast(CursorResult[Any], result).rowcount == 1


def list_users(session: Session) -> Sequence[User]:
    return session.scalars(select(User).order_by(User.name)).all()


def any_users(session: Session) -> bool:
    """Whether users are configured at all (none: the single-key laptop mode)."""
    return bool(session.scalar(select(func.count()).select_from(User)))


def user_for_token(session: Session, token: str) -> User | None:
    """The active user this token belongs to, or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    user = session.scalar(select(User).where(User.token_hash == hash_token(token)))
    return user if user is not None and user.revoked_at is None else None


def record(
    session: Session, user: str | None, method: str, path: str, status: int, target: str | None
) -> None:
    session.add(
        AuditEntry(
            user=user,
            method=method[:8],
            path=path[:512],
            status=status,
            target=None if target is None else target[:64],
        )
    )


def audit_entries(
    session: Session, limit: int = 100, offset: int = 0, user: str | None = None
) -> tuple[Sequence[AuditEntry], int]:
    query = select(AuditEntry)
    counter = select(func.count()).select_from(AuditEntry)
    if user is not None:
        query, counter = (
            query.where(AuditEntry.user == user),
            counter.where(AuditEntry.user == user),
        )
    rows = session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit).offset(offset)).all()
    return rows, int(session.scalar(counter) or 0)
