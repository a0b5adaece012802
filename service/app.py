"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from astropt import __version__
from service.catalogues import galaxy_routes as galaxies
from service.catalogues import routes as catalogues
from service.datasets import routes as datasets_routes
from service.http import health
from service.http.body_guard import BodyGuard
from service.http.deadline import Deadline, SingleFlightProbe
from service.http.json_errors import undecodable_json
from service.http.metrics import ServiceMetrics
from service.inference import routes as inference
from service.inference.engine import ensure_engine
from service.jobs import outputs
from service.jobs import routes as jobs
from service.jobs.service import Publisher
from service.ui import install_ui
from service.users import routes as users_routes
from service.users.audit import AuditLog
from service.users.auth import TOKEN_ERRORS, require
from state.errors import ServiceError, SpecInvalid
from state.settings import InferenceSettings, Settings, get_inference_settings, get_settings
from state.store import migrate, ping

log = logging.getLogger(__name__)
# the store failing under a request: connection refused or lost, statement or pool timeout
STORE_UNAVAILABLE: tuple[type[Exception], ...] = (OperationalError, InterfaceError, PoolTimeout)

DESCRIPTION = """Train AstroPT models on AION galaxy-image tokens over HTTP.

Submit a training configuration to `POST /jobs` (try the *tiny-cpu* example), then watch
`GET /jobs/{id}`, `GET /jobs/{id}/loss.png` or the live `GET /jobs/{id}/events` stream.
When the service has an API key, click **Authorize** and enter it for the POST/DELETE calls.
"""


def create_app(
    settings: Settings | None = None,
    publish: Publisher | None = None,
    check_broker: Callable[[], None] | None = None,
    inference_settings: InferenceSettings | None = None,
) -> FastAPI:
    """Build the app. ``publish``/``check_broker`` default to the Celery broker in ``settings``;
    ``inference_settings`` to ``ASTROPT_INFERENCE_*``."""
    settings = settings or get_settings()
    if publish is None or check_broker is None:
        default_publish, default_check = _celery_hooks(settings)
        publish = publish or default_publish
        check_broker = check_broker or default_check

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.ensure_dirs()
        migrate(settings.resolved_database_url)
        ensure_engine(app)  # the one inference engine, from the app's inference settings
        try:
            yield
        finally:
            engine = getattr(app.state, "inference_engine", None)
            if engine is not None:
                engine.close()  # its compute thread stops; queued requests are cancelled

    app = FastAPI(
        title="AstroPT service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,  # served offline by service.ui
        openapi_url="/openapi.json" if settings.docs_enabled else None,
    )
    app.state.settings = settings
    app.state.inference_settings = inference_settings or get_inference_settings()
    app.state.publish = publish
    app.state.check_broker = _probe(
        check_broker, settings.broker_timeout_seconds, "broker health check"
    )
    app.state.check_database = _probe(
        lambda: ping(settings.resolved_database_url),
        settings.database_timeout_seconds,
        "database health check",
    )
    app.state.metrics = ServiceMetrics(settings.resolved_database_url)
    app.add_middleware(
        BodyGuard,
        timeout_seconds=settings.body_timeout_seconds,
        json_limit=settings.max_json_body_bytes,
    )
    app.add_middleware(AuditLog, database_url=settings.resolved_database_url)
    app.middleware("http")(app.state.metrics.middleware)  # outermost: counts every answer
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, undecodable_json)
    for error in STORE_UNAVAILABLE:
        app.add_exception_handler(error, _store_unavailable)
    # Everything but /health and /metrics needs the read scope (open while no user exists);
    # the principal it sets is the service layer's owner filter (service.users.context).
    reads = [Depends(require("read"))]
    app.include_router(jobs.router, dependencies=reads, responses=TOKEN_ERRORS)
    app.include_router(outputs.router, dependencies=reads, responses=TOKEN_ERRORS)
    app.include_router(health.router)
    app.include_router(inference.router, dependencies=reads, responses=TOKEN_ERRORS)
    app.include_router(catalogues.router, dependencies=reads, responses=TOKEN_ERRORS)
    app.include_router(
        galaxies.router, dependencies=reads, responses=TOKEN_ERRORS
    )  # a catalogue's galaxies
    app.include_router(datasets_routes.router, dependencies=reads, responses=TOKEN_ERRORS)
    app.include_router(users_routes.router)
    install_ui(app, docs_enabled=settings.docs_enabled)
    return app


def _celery_hooks(settings: Settings) -> tuple[Publisher, Callable[[], None]]:
    from broker import enqueue_training, make_train_app

    celery = make_train_app(settings.broker_config(), settings.train_queue)
    # connect + one retry, each bounded by the socket timeouts, and a little slack
    deadline = Deadline(2 * settings.broker_timeout_seconds + 1.0)

    def publish(job_id: str) -> None:
        deadline.call(
            lambda: enqueue_training(celery, job_id, settings.train_queue),
            "publishing to the broker",
        )

    def ping_broker() -> None:
        if settings.uses_filesystem_broker:
            folder = settings.broker_dir / "queue"
            if not folder.is_dir():
                raise RuntimeError(f"broker folder {folder} is missing")
            return
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=settings.broker_timeout_seconds)
            client = getattr(connection.default_channel, "client", None)
            if hasattr(client, "ping"):  # Redis: a broker that accepts and never answers fails here
                client.ping()

    return publish, SingleFlightProbe(ping_broker, deadline, "broker health check")


def _probe(check: Callable[[], None], timeout_seconds: float, what: str) -> SingleFlightProbe:
    if isinstance(check, SingleFlightProbe):
        return check
    return SingleFlightProbe(check, Deadline(2 * timeout_seconds + 1.0, max_threads=2), what)


async def _service_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if isinstance(exc, SpecInvalid):
        issue = {
            "loc": ["body", *exc.field.split(".")],
            "field": exc.field,
            "msg": exc.detail,
            "type": "value_error",
        }
        return JSONResponse({"detail": [issue]}, status_code=422)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _store_unavailable(_: Request, exc: Exception) -> JSONResponse:
    """The database refused, dropped or timed out a call: 503 JSON (counted in the request metrics)."""
    log.warning(
        "database unavailable: %s: %s",
        type(exc).__name__,
        str(exc).splitlines()[0] if str(exc) else "",
    )
    detail = f"database unavailable ({type(exc).__name__}); try again shortly"
    return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "5"})


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    issues = []
    for error in exc.errors():
        loc = [part for part in error.get("loc", ()) if isinstance(part, str | int)]
        field = ".".join(str(part) for part in loc[1:] if part != "body") or ".".join(map(str, loc))
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        issues.append(
            {"loc": loc, "field": field, "msg": message, "type": error.get("type", "value_error")}
        )
    return JSONResponse({"detail": issues}, status_code=422)
