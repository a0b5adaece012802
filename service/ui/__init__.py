"""What a person sees: offline API docs (/docs, /redoc), the dashboard (/ui) and run
comparison (/jobs/compare.png)."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from service.ui.compare import install_compare
from service.ui.datasets_page import router as datasets_router
from service.ui.docs import install_docs
from service.ui.login import router as login_router
from service.ui.pages import HERE
from service.ui.pages import router as pages_router
from service.users.auth import require, ui_reader


def install_ui(app: FastAPI, docs_enabled: bool = True) -> None:
    """Add the docs pages, the favicon and the dashboard to ``app``."""
    install_docs(app, docs_enabled)
    install_compare(app, dependencies=[Depends(require("read"))])
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    pages = [Depends(ui_reader)]  # a browser without a token is sent to /ui/login
    app.include_router(pages_router, dependencies=pages)
    app.include_router(datasets_router, dependencies=pages)
    app.include_router(login_router)
