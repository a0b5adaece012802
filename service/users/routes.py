"""Who am I, and the audit log (admins)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from service.deps import SessionDep
from service.http.responses import STORE_DOWN
from service.users.auth import TOKEN_ERRORS, Admin, Reader
from state.store.users import audit_entries

router = APIRouter(tags=["users"], responses={**STORE_DOWN, **TOKEN_ERRORS})


class Me(BaseModel):
    name: str | None
    scopes: list[str]
    how: str


class AuditOut(BaseModel):
    id: int
    at: datetime
    user: str | None
    method: str
    path: str
    status: int
    target: str | None


class AuditList(BaseModel):
    items: list[AuditOut]
    total: int


@router.get("/users/me", response_model=Me, summary="Who the service takes you for")
def me(who: Reader) -> Me:
    return Me(name=who.name, scopes=sorted(who.scopes), how=who.how)


@router.get(
    "/audit", response_model=AuditList, summary="The audit log of mutating requests (admins)"
)
def audit(
    session: SessionDep,
    who: Admin,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    user: Annotated[str | None, Query(max_length=64)] = None,
) -> AuditList:
    rows, total = audit_entries(session, limit, offset, user)
    return AuditList(
        items=[AuditOut.model_validate(r, from_attributes=True) for r in rows], total=total
    )
