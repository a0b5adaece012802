"""API docs served entirely by the app: Swagger UI at /docs, ReDoc at /redoc, a favicon.

FastAPI's own pages load their JavaScript from a CDN and render blank offline. The assets
here come from the pinned ``fastapi-offline`` package (Swagger UI 5 and ReDoc 2 bundles, both
of which read the OpenAPI 3.1 document FastAPI emits; ``swagger-ui-bundle`` ships Swagger UI
4, which does not). ``ASTROPT_DOCS_ENABLED=false`` turns all of it off, ``/openapi.json`` too.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSET_PREFIX = "/static/docs"
FAVICON_URL = f"{ASSET_PREFIX}/favicon.png"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
# The browser itself refuses anything from elsewhere: ReDoc's footer logo (a CDN image,
# hidden by ReDoc when it fails to load) and Swagger UI's validator badge never go out.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)


# ReDoc's bundle names one image on a CDN (its footer logo); we serve the bundle with that
# address pointed at our own favicon, so the page asks nothing of any other host.
REDOC_JS_URL = "/static/redoc/redoc.standalone.js"
REDOC_CDN_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@lru_cache(maxsize=1)
def _redoc_bundle() -> bytes:
    return (
        (ASSETS / "redoc.standalone.js")
        .read_bytes()
        .replace(REDOC_CDN_LOGO.encode(), FAVICON_URL.encode())
    )


def _offline(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page


def install_docs(app: FastAPI, enabled: bool) -> None:
    """Mount the offline docs on ``app`` (which must be built with docs_url=redoc_url=None)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/favicon.ico")
    def favicon() -> FileResponse:
        return FileResponse(ASSETS / "favicon.png", media_type="image/png")

    if enabled:
        app.mount(ASSET_PREFIX, StaticFiles(directory=ASSETS), name="docs-assets")

        @router.get("/docs")
        def swagger_ui() -> HTMLResponse:
            return _offline(
                get_swagger_ui_html(
                    openapi_url=app.openapi_url or "/openapi.json",
                    title=f"{app.title} - Swagger UI",
                    swagger_js_url=f"{ASSET_PREFIX}/swagger-ui-bundle.js",
                    swagger_css_url=f"{ASSET_PREFIX}/swagger-ui.css",
                    swagger_favicon_url=FAVICON_URL,
                    oauth2_redirect_url=OAUTH2_REDIRECT_URL,
                    swagger_ui_parameters={
                        "persistAuthorization": True,
                        "displayRequestDuration": True,
                        "validatorUrl": None,
                    },
                )
            )

        @router.get(OAUTH2_REDIRECT_URL)
        def swagger_ui_redirect() -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()

        @router.get("/redoc")
        def redoc() -> HTMLResponse:
            return _offline(
                get_redoc_html(
                    openapi_url=app.openapi_url or "/openapi.json",
                    title=f"{app.title} - ReDoc",
                    redoc_js_url=REDOC_JS_URL,
                    redoc_favicon_url=FAVICON_URL,
                    with_google_fonts=False,
                )
            )

        @router.get(REDOC_JS_URL)
        def redoc_bundle() -> Response:
            return Response(
                _redoc_bundle(),
                media_type="text/javascript",
                headers={"Cache-Control": "public, max-age=86400"},
            )

    app.include_router(router)
