"""What a person sees: offline API docs (/docs, /redoc) and the dashboard (/ui)."""

from __future__ import annotations

from fastapi import FastAPI

from service.ui.docs import install_docs


def install_ui(app: FastAPI, docs_enabled: bool = True) -> None:
    """Add the docs pages, the favicon and the dashboard to ``app``."""
    install_docs(app, docs_enabled)
