"""The principal of the request being served, for the service layer.

Set by the scope dependencies (:func:`service.users.auth.require`) on every protected route,
so :func:`service.jobs.service.get` and the other readers filter by owner without each route having
to remember to: a new route is protected by being mounted under a protected router. Outside
a request (the CLI, workers, tests calling the layer directly) no principal is set and every
job is visible.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.users.auth import Principal

_current: ContextVar[Principal | None] = ContextVar("astropt_principal", default=None)


def set_principal(who: Principal) -> None:
    _current.set(who)


def current() -> Principal | None:
    return _current.get()


def owner_filter() -> str | None:
    """Whose jobs the current request may see: a user's name, or None for everyone's."""
    who = _current.get()
    return None if who is None else who.owner_filter


def submitter() -> str | None:
    """The user a job submitted now belongs to (None: the shared key, or no users configured)."""
    who = _current.get()
    return None if who is None else who.name
