"""POST /jobs reads its body strictly before FastAPI's lenient parsing sees it."""

from __future__ import annotations

import codecs
import json

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from jobkinds.paths import check_spec_paths
from service.http.body_guard import reject_non_finite
from service.jobs.schemas import JobSpec


async def strict_job_body(request: Request) -> None:
    """POST /jobs: plain UTF-8 JSON, finite numbers, and no strings or booleans where numbers belong.

    FastAPI's own parsing is lenient ("100" -> 100, NaN accepted, a byte-order mark skipped);
    this dependency reads the same (cached) body first and refuses what lenient parsing hides.
    """
    body = await request.body()
    if not body.strip():
        return  # FastAPI answers a missing body itself
    if body.startswith(codecs.BOM_UTF8):
        raise _invalid("the body starts with a UTF-8 byte-order mark; send plain UTF-8 JSON")
    try:
        raw = json.loads(body, parse_constant=reject_non_finite)
    except ValueError as exc:
        raise _invalid(str(exc)) from exc
    # paths first: the schema's own checks look at the file system (an existence check would
    # tell an outsider which paths exist outside the data roots)
    check_spec_paths(raw, request.app.state.settings)
    try:
        JobSpec.model_validate_json(body, strict=True)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from exc


def _invalid(message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body",), "msg": message, "type": "json_invalid"}])
