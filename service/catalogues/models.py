"""The model of a catalogue, for embedding an uploaded image exactly as the catalogue's rows
were embedded (its checkpoint, or its random-init baseline, with its codec, pooling, layer
and centre). Models are loaded in the API process on the CPU and kept for the next query."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from state.errors import Conflict, SpecInvalid

MAX_MODELS = 2  # catalogue models kept loaded per API process
_models: OrderedDict[tuple[str, int | None], Any] = OrderedDict()
_lock = threading.Lock()


def _model(manifest: dict[str, Any]) -> Any:
    from astropt.science import load_embed_model

    described = manifest.get("model") or {}
    random_init = described.get("seed") if described.get("kind") == "random-init" else None
    checkpoint = manifest.get("checkpoint")
    if not checkpoint or not Path(checkpoint).is_dir():
        raise Conflict(
            f"the catalogue's model ({checkpoint}) is no longer on this machine; search it by "
            "object_id instead"
        )
    key = (str(checkpoint), random_init)
    with _lock:
        if key in _models:
            _models.move_to_end(key)
            return _models[key]
    model = load_embed_model(checkpoint, device="cpu", random_init=random_init)
    with _lock:
        _models[key] = model
        while len(_models) > MAX_MODELS:
            _models.popitem(last=False)
    return model


def embed_cube(manifest: dict[str, Any], cube: Any) -> np.ndarray:
    """float32 ``[D]``: the upload's embedding in the catalogue's space."""
    from astropt.pooling import DEFAULT_CENTRE
    from astropt.science import EmbedOptions
    from astropt.science.embedding import embed_inputs_many

    model = _model(manifest)
    reader = model.reader
    recorded = manifest.get("inputs") or {
        "tokeniser": "aion",
        "codec": (manifest.get("codec") or {}).get("fingerprint"),
    }
    if reader.describe() != recorded:
        raise Conflict(
            "the catalogue's checkpoint now reads its images otherwise (another codec or patch "
            "layout) than when the catalogue was made"
        )
    options = EmbedOptions(
        pool=manifest["pooling"],
        layer=int(manifest["layer"]),
        centre=int(manifest.get("centre") or DEFAULT_CENTRE),
        batch_size=1,
    )
    try:
        inputs = reader.flux_inputs(np.asarray(cube.flux)[None], cube.bands)
    except ValueError as exc:
        raise SpecInvalid("file", f"this image could not be encoded: {exc}") from exc
    with _lock:  # one forward at a time through a shared model
        return embed_inputs_many(model.model, inputs, [options], reader)[0]
