"""Health (database + broker) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from astropt import __version__
from service.deps import SettingsDep
from service.schemas import Health
from service.store import ping

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=Health, summary="Database and broker reachability",
            responses={503: {"model": Health, "description": "Database or broker unreachable"}})
def health(request: Request, settings: SettingsDep) -> JSONResponse:
    database = _check(lambda: ping(settings.resolved_database_url))
    broker = _check(request.app.state.check_broker)
    body = Health(status="ok" if database == broker == "ok" else "degraded",
                  database=database, broker=broker, version=__version__)
    return JSONResponse(body.model_dump(), status_code=200 if body.status == "ok" else 503)


def _check(probe: object) -> str:
    try:
        probe()  # type: ignore[operator]
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"[:300]
    return "ok"


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
