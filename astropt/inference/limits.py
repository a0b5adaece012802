"""Upload limits, the one error type of upload parsing, and band names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from astropt.constants import DEFAULT_BANDS

MIN_SIDE = 96  # the codec's centre crop
# What is wrong with an upload; the service maps each to its HTTP answer (service/inference/errors.py).
InputProblem = Literal["too_large", "unsupported", "invalid", "busy"]


class InputError(ValueError):
    """Unusable upload; ``problem`` says which way (too large, not a supported format, unusable
    content, or the service too busy to read it now: ``retry_after_s``)."""

    def __init__(self, problem: InputProblem, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.problem: InputProblem = problem
        self.message = message
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class UploadLimits:
    max_upload_bytes: int = 32 * 2**20
    max_decompressed_bytes: int = 256 * 2**20
    max_side: int = 4096
    max_nonfinite_fraction: float = 0.5
    max_hdus: int = 64
    max_inflating_bytes: int = 512 * 2**20  # gzip output held at once by all uploads of the process
    inflate_wait_s: float = 30.0  # how long an upload waits for that budget before a 503


def normalise_band(name: str) -> str:
    """``g``, ``des-g``, ``DES_G`` -> ``DES-G``; anything else is an InputError (422)."""
    text = str(name).strip().upper().replace("_", "-").replace(" ", "-")
    if len(text) == 1:
        text = f"DES-{text}"
    if text.endswith("-BAND"):
        text = text[: -len("-BAND")]
    if text in DEFAULT_BANDS:
        return text
    if text.startswith("HSC-"):
        raise InputError(
            "invalid",
            f"band {name!r}: HSC bands are not supported; the models are trained on Legacy "
            f"Survey tokens: send {', '.join(DEFAULT_BANDS)} (or g, r, i, z)",
        )
    raise InputError(
        "invalid", f"unknown band {name!r}: use {', '.join(DEFAULT_BANDS)} (or g, r, i, z)"
    )


def parse_bands(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """A request's band list (``"g,r,z"`` or a list) -> normalised names, or None if absent."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [i for i in (str(x).strip() for x in items) if i]
    if not items:
        return None
    return tuple(normalise_band(b) for b in items)
