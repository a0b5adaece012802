"""The per-process cache of loaded codecs: ``load_codec(spec, device)`` loads a codec once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import NamedTuple

import torch

from astropt.codec.handle import CodecHandle
from astropt.codec.info import CodecError, CodecInfo
from astropt.codec.layout import (
    SHIPPED_DIR,
    SMALL_CODEC_ARGS,
    WEIGHTS_NAME,
    _load_local,
    _with_config,
    fingerprint,
    random_codec,
)
from astropt.codec.spec import _hub_snapshot, resolve


class CacheKey(NamedTuple):
    codec: str  # "<source>:<target>" of the resolved spec
    device: str


_CACHE: dict[CacheKey, CodecHandle] = {}
_CACHE_LOCK = threading.Lock()


def load_codec(spec: str = "default", device: str | torch.device = "cpu") -> CodecHandle:
    """Load (and cache per process) the codec a spec names."""
    source, target = resolve(spec)
    key = CacheKey(f"{source}:{target}", str(device))
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        if source == "random":
            codec = _with_config(random_codec(int(target)), SMALL_CODEC_ARGS)
            resolved, trained = f"random:{target}", False
        elif source == "shipped":
            if not (SHIPPED_DIR / WEIGHTS_NAME).is_file():
                raise CodecError(
                    "the shipped codec is missing from this installation "
                    f"({SHIPPED_DIR / WEIGHTS_NAME}); reinstall the package or use another codec spec"
                )
            codec, resolved, trained = _load_local(SHIPPED_DIR), "shipped", True
        elif source == "local":
            codec, resolved, trained = _load_local(Path(target)), target, True
        else:
            codec, resolved, trained = _load_local(_hub_snapshot(target)), target, True
        info = CodecInfo(resolved, source, fingerprint(codec), trained)
        handle = CodecHandle(codec, info, device)
        _CACHE[key] = handle
        return handle


def evict_codec(handle: CodecHandle) -> None:
    """Drop a handle from the per-process cache so its memory can be freed."""
    with _CACHE_LOCK:
        for key in [k for k, v in _CACHE.items() if v is handle]:
            del _CACHE[key]
