"""The errors an inference request can end with, their wire form and their HTTP status.

Every expected failure is one of the classes in :data:`REQUEST_ERRORS`. A worker sends one
back as an :class:`ErrorPayload` (kind + message + status, JSON), the API re-raises the same
class from it, and the HTTP layer reads the status from :func:`http_status`: one mapping,
whichever side computed the request.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, cast, get_args

from astropt.checkpoints import CheckpointError
from astropt.codec import CodecError
from astropt.inference.limits import InputError
from astropt.inference.pipeline import OptionsError

ErrorKind = Literal["codec", "checkpoint", "input", "options", "busy"]


class EngineBusy(RuntimeError):
    """The queue is full or a request waited too long; the client should retry later."""

    def __init__(self, message: str, retry_after_s: float = 1.0):
        super().__init__(message)
        self.retry_after_s = retry_after_s


_CLASSES: dict[ErrorKind, type[Exception]] = {
    "codec": CodecError,
    "checkpoint": CheckpointError,
    "input": InputError,
    "options": OptionsError,
    "busy": EngineBusy,
}
REQUEST_ERRORS: tuple[type[Exception], ...] = tuple(_CLASSES.values())


def error_kind(exc: BaseException) -> ErrorKind | None:
    """The kind of an expected request error; None for anything else (a bug, not the request)."""
    return next((kind for kind, cls in _CLASSES.items() if isinstance(exc, cls)), None)


def http_status(exc: BaseException) -> int:
    """The HTTP status of an inference error: 409 the model cannot be used, 4xx the upload or
    options, 503 overloaded, 422 anything else (the image could not be processed; never 500)."""
    kind = error_kind(exc)
    if kind in ("codec", "checkpoint"):
        return 409
    if kind == "input":
        return int(getattr(exc, "status", 422))
    if kind == "busy":
        return 503
    return 422


@dataclass(frozen=True)
class ErrorPayload:
    """An expected error as it crosses the queue (JSON): re-raised as the same class."""

    kind: ErrorKind
    message: str
    status: int

    @classmethod
    def of(cls, exc: BaseException) -> ErrorPayload:
        kind = error_kind(exc)
        if kind is None:
            raise TypeError(f"{type(exc).__name__} is not an inference request error") from exc
        return cls(kind, str(exc), http_status(exc))

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> ErrorPayload:
        kind = data.get("kind")
        if kind not in get_args(ErrorKind):
            raise ValueError(f"unknown inference error kind {kind!r}")
        return cls(
            cast(ErrorKind, kind),
            str(data.get("message", "inference failed")),
            int(data.get("status", 422)),
        )

    def exception(self) -> Exception:
        if self.kind == "input":
            return InputError(self.status, self.message)
        return _CLASSES[self.kind](self.message)
