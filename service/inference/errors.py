"""The one mapping from the library's inference errors to HTTP answers (astropt has none)."""

from __future__ import annotations

from astropt.inference.errors import error_kind
from astropt.inference.limits import InputError

INPUT_STATUS = {"too_large": 413, "unsupported": 415, "invalid": 422, "busy": 503}


def http_status(exc: BaseException) -> int:
    """409 the model cannot be used; 413/415/422 the upload (503 while the service is too busy
    to read it); 503 the engine overloaded; 422 anything else the request asked (the image could
    not be processed): never 500."""
    kind = error_kind(exc)
    if kind in ("codec", "checkpoint"):
        return 409
    if isinstance(exc, InputError):
        return INPUT_STATUS[exc.problem]
    if kind == "busy":
        return 503
    return 422
