"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from astropt import __version__
from service.body_guard import BodyGuard
from service.errors import ServiceError, SpecInvalid
from service.jobs import Publisher
from service.metrics import ServiceMetrics
from service.routes import health, inference, jobs, outputs
from service.settings import Settings, get_settings
from service.store import migrate
from service.ui import install_ui

log = logging.getLogger(__name__)

DESCRIPTION = """Train AstroPT models on AION galaxy-image tokens over HTTP.

Submit a training configuration to `POST /jobs` (try the *tiny-cpu* example), then watch
`GET /jobs/{id}`, `GET /jobs/{id}/loss.png` or the live `GET /jobs/{id}/events` stream.
When the service has an API key, click **Authorize** and enter it for the POST/DELETE calls.
"""


def create_app(
    settings: Settings | None = None,
    publish: Publisher | None = None,
    check_broker: Callable[[], None] | None = None,
) -> FastAPI:
    """Build the app. ``publish``/``check_broker`` default to the Celery broker in ``settings``."""
    settings = settings or get_settings()
    if publish is None or check_broker is None:
        default_publish, default_check = _celery_hooks(settings)
        publish = publish or default_publish
        check_broker = check_broker or default_check

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        settings.ensure_dirs()
        migrate(settings.resolved_database_url)
        yield

    app = FastAPI(title="AstroPT service", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None,  # served offline by service.ui
                  openapi_url="/openapi.json" if settings.docs_enabled else None)
    app.state.settings = settings
    app.state.publish = publish
    app.state.check_broker = check_broker
    app.state.metrics = ServiceMetrics(settings.resolved_database_url)
    app.add_middleware(BodyGuard, timeout_seconds=settings.body_timeout_seconds,
                       json_limit=settings.max_json_body_bytes)
    app.middleware("http")(app.state.metrics.middleware)  # outermost: counts every answer
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.include_router(jobs.router)
    app.include_router(outputs.router)
    app.include_router(health.router)
    app.include_router(inference.router)
    install_ui(app, docs_enabled=settings.docs_enabled)
    return app


def _celery_hooks(settings: Settings) -> tuple[Publisher, Callable[[], None]]:
    from broker import BrokerConfig, enqueue_training, make_train_app

    celery = make_train_app(BrokerConfig(settings.resolved_broker_url, settings.broker_transport_options()),
                            settings.train_queue)

    def publish(job_id: str) -> None:
        enqueue_training(celery, job_id, settings.train_queue)

    def check_broker() -> None:
        if settings.uses_filesystem_broker:
            folder = settings.broker_dir / "queue"
            if not folder.is_dir():
                raise RuntimeError(f"broker folder {folder} is missing")
            return
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=3)

    return publish, check_broker


async def _service_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if isinstance(exc, SpecInvalid):
        issue = {"loc": ["body", *exc.field.split(".")], "field": exc.field, "msg": exc.detail,
                 "type": "value_error"}
        return JSONResponse({"detail": [issue]}, status_code=422)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    issues = []
    for error in exc.errors():
        loc = [part for part in error.get("loc", ()) if isinstance(part, str | int)]
        field = ".".join(str(part) for part in loc[1:] if part != "body") or ".".join(map(str, loc))
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        issues.append({"loc": loc, "field": field, "msg": message, "type": error.get("type", "value_error")})
    return JSONResponse({"detail": issues}, status_code=422)
