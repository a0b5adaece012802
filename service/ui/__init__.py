"""What a person sees: offline API docs (/docs, /redoc) and the dashboard (/ui)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from service.ui.docs import install_docs
from service.ui.pages import HERE
from service.ui.pages import router as pages_router


def install_ui(app: FastAPI, docs_enabled: bool = True) -> None:
    """Add the docs pages, the favicon and the dashboard to ``app``."""
    install_docs(app, docs_enabled)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    app.include_router(pages_router)
