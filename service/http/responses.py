"""Error answers in the OpenAPI document, shared by the routers (every status an operation can
give is documented; tests/service/test_openapi_fuzz.py holds the routes to it)."""

from __future__ import annotations

from typing import Any

from service.http.schemas import ErrorOut

Responses = dict[int | str, dict[str, Any]]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


STORE_DOWN: Responses = {
    503: _error(
        "Database unavailable (or, where a job is queued, the broker); "
        "Retry-After says when to try again"
    )
}
BODY_LIMITS: Responses = {
    408: _error("The request body was not received within ASTROPT_BODY_TIMEOUT_SECONDS"),
    413: _error("The request body is larger than its limit"),
}
UPLOAD: Responses = {
    **BODY_LIMITS,
    400: _error("Malformed multipart body"),
    401: _error("Missing or wrong API key"),
    404: _error("Unknown job, or no completed job to take a model from"),
    409: _error("The job's model cannot be used (not completed, no checkpoint, another codec)"),
    415: _error("Not multipart/form-data, or a file type other than FITS / NumPy"),
    422: _error("The image or the options could not be used"),
    429: _error("Too many uploads waiting to be parsed; Retry-After"),
    503: _error("Inference engine busy, or the database unavailable; Retry-After"),
}
