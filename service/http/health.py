"""Health (database + broker) and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from astropt import __version__
from service.http.deadline import SingleFlightProbe
from service.http.schemas import Health

router = APIRouter(tags=["operations"])


@router.get(
    "/health",
    response_model=Health,
    summary="Database and broker reachability",
    responses={
        503: {
            "model": Health,
            "description": "Database or broker unreachable (or silent past its timeout)",
        }
    },
)
async def health(request: Request) -> JSONResponse:
    """Answers within the database and broker timeouts, whatever the state of either: each is
    probed by one background call at a time, which every waiting health check shares."""
    state = request.app.state
    database, broker = await asyncio.gather(
        _check(state.check_database), _check(state.check_broker)
    )
    body = Health(
        status="ok" if database == broker == "ok" else "degraded",
        database=database,
        broker=broker,
        version=__version__,
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.status == "ok" else 503)


async def _check(probe: SingleFlightProbe) -> str:
    try:
        await probe.check()
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"[:300]
    return "ok"


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
def metrics(request: Request) -> Response:
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
