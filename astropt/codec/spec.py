"""Codec specs: which codec a string names (hub id, local directory, shipped, random:SEED)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from astropt.codec.info import CodecError, CodecSource
from astropt.codec.layout import CONFIG_NAME, SHIPPED_DIR, WEIGHTS_NAME

HUB_DEFAULT = "polymathic-ai/aion-base"


class ResolvedSpec(NamedTuple):
    source: CodecSource
    target: str  # hub id, absolute directory, or the random seed


def resolve(spec: str) -> ResolvedSpec:
    """Spec -> (source, target). Does not load weights (except probing the hub for 'default')."""
    spec = (spec or "default").strip()
    if spec == "default":
        try:
            _hub_snapshot(HUB_DEFAULT)
            return ResolvedSpec("hub", HUB_DEFAULT)
        except CodecError:
            return ResolvedSpec("shipped", str(SHIPPED_DIR))
    if spec == "shipped":
        return ResolvedSpec("shipped", str(SHIPPED_DIR))
    if spec.startswith("random:"):
        seed = spec.split(":", 1)[1]
        if not seed.isdigit():
            raise CodecError(f"codec spec {spec!r}: expected random:SEED with an integer seed")
        return ResolvedSpec("random", seed)
    if spec.startswith("hub:"):
        return ResolvedSpec("hub", spec[4:])
    path = Path(spec).expanduser()
    if path.exists():
        return ResolvedSpec("local", str(path.resolve()))
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return ResolvedSpec("hub", spec)
    raise CodecError(
        f"unknown codec spec {spec!r}: use 'default', 'shipped', a hub id like "
        f"'{HUB_DEFAULT}', an existing local directory, or 'random:SEED'"
    )


def _hub_snapshot(repo_id: str) -> Path:
    """Fetch the codec files of a hub repo (or find them in the HF cache)."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    token = os.environ.get("HF_TOKEN") or None
    try:
        in_cache = all(
            isinstance(try_to_load_from_cache(repo_id, name), str)
            for name in (CONFIG_NAME, WEIGHTS_NAME)
        )
        local_only = in_cache or _hub_offline()
        if not local_only:
            _probe_hub()
        cfg = hf_hub_download(repo_id, CONFIG_NAME, token=token, local_files_only=local_only)
        hf_hub_download(repo_id, WEIGHTS_NAME, token=token, local_files_only=local_only)
    except Exception as exc:  # offline, unreachable, gated, missing: all mean "not here"
        raise CodecError(
            f"codec {repo_id!r} could not be had from the Hugging Face hub or its cache "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            "Alternatives: codec='shipped' (the packaged mock-trained codec), a local "
            "directory in AION's layout, or set HF_TOKEN / go online and retry."
        ) from exc
    return Path(cfg).parents[2]


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _probe_hub(timeout: float = 3.0) -> None:
    """Fail in seconds, not minutes of retries, when the hub cannot be reached."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"cannot reach {url.hostname}:{port} ({exc})") from exc
