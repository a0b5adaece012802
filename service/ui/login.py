"""/ui/login: where a browser without a token is sent once users exist (service.users)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from service.ui.pages import render

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/login")
def login_page(
    request: Request,
    next: Annotated[str, Query(max_length=2048, pattern=r"^/ui(/[^\s]*)?$")] = "/ui/jobs",
) -> HTMLResponse:
    """Paste a token (``astropt users add``); the page keeps it in this browser and goes back."""
    return render(request, "login.html", next=next)
