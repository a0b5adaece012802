"""The errors an inference request can end with, and their wire form.

Every expected failure is one of the classes in :data:`REQUEST_ERRORS`. A worker sends one
back as an :class:`ErrorPayload` (kind + message + an upload's problem, JSON) and the API
re-raises the same class from it, so the service maps errors to HTTP answers in one place
(service/inference/errors.py) whichever side computed the request. No HTTP here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, cast, get_args

from astropt.checkpoints import CheckpointError
from astropt.codec import CodecError
from astropt.inference.limits import InputError, InputProblem
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


@dataclass(frozen=True)
class ErrorPayload:
    """An expected error as it crosses the queue (JSON): re-raised as the same class."""

    kind: ErrorKind
    message: str
    problem: InputProblem | None = None  # kind "input": which problem the upload has

    @classmethod
    def of(cls, exc: BaseException) -> ErrorPayload:
        kind = error_kind(exc)
        if kind is None:
            raise TypeError(f"{type(exc).__name__} is not an inference request error") from exc
        return cls(kind, str(exc), exc.problem if isinstance(exc, InputError) else None)

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> ErrorPayload:
        kind = data.get("kind")
        if kind not in get_args(ErrorKind):
            raise ValueError(f"unknown inference error kind {kind!r}")
        problem = data.get("problem")
        if problem is not None and problem not in get_args(InputProblem):
            raise ValueError(f"unknown upload problem {problem!r}")
        return cls(
            cast(ErrorKind, kind),
            str(data.get("message", "inference failed")),
            cast("InputProblem | None", problem),
        )

    def exception(self) -> Exception:
        if self.kind == "input":
            return InputError(self.problem or "invalid", self.message)
        return _CLASSES[self.kind](self.message)
