"""A JSON body that cannot even be decoded (bytes that are not UTF-8, arrays nested past the
parser's depth) is a 422 like any other invalid JSON, not FastAPI's undocumented 400 "There was
an error parsing the body"."""

from __future__ import annotations

from fastapi import Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException


async def undecodable_json(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    cause = exc.__cause__
    if exc.status_code == 400 and isinstance(
        cause, ValueError | RecursionError
    ):  # not UTF-8; nested too deep
        issue = {
            "loc": ["body"],
            "field": "body",
            "type": "json_invalid",
            "msg": f"the body is not valid JSON ({type(cause).__name__}: {cause}); send UTF-8 JSON",
        }
        return JSONResponse({"detail": [issue]}, status_code=422)
    return await http_exception_handler(request, exc)
