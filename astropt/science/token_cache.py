"""Codec tokens of an embedding source, kept per shard in the token cache.

Encoding a galaxy with the codec costs about as much as the model's forward pass, and the
tokens depend only on the galaxies and the codec: a second catalogue of the same source
(another pooling or layer, the random-init baseline, another model trained with the same
codec) reads them instead of encoding again. Beside the training token cache
(:func:`astropt.tokenise.token_cache_dir`)::

    tokens/catalogues/<key of the source, its bands and the codec>/rows_<start>_<stop>.npy

int16 ``[stop - start, 576]``, each written whole to a temporary name and renamed, so a file
there is always complete; one that does not fit its rows is ignored (and written again).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from astropt.constants import TOKENS_PER_IMAGE
from astropt.tokenise import token_cache_dir


@dataclass(frozen=True)
class TokenShards:
    root: Path

    @classmethod
    def for_source(
        cls, data_source: dict[str, Any], codec_fingerprint: str, bands: tuple[str, ...]
    ) -> TokenShards:
        record = json.dumps(
            {"source": data_source, "codec": codec_fingerprint, "bands": list(bands)},
            sort_keys=True,
            default=str,
        )
        return cls(
            token_cache_dir() / "catalogues" / hashlib.sha256(record.encode()).hexdigest()[:24]
        )

    def path(self, span: range) -> Path:
        return self.root / f"rows_{span.start:09d}_{span.stop:09d}.npy"

    def load(self, span: range) -> np.ndarray | None:
        """The tokens of rows ``span``, or None when they are not cached (or do not fit)."""
        try:
            tokens = np.load(self.path(span), allow_pickle=False)
        except (OSError, ValueError):
            return None
        return tokens if tokens.shape == (len(span), TOKENS_PER_IMAGE) else None

    def save(self, span: range, tokens: np.ndarray) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.path(span)
        partial = target.with_name(f"{target.stem}.partial-{os.getpid()}.npy")
        np.save(partial, np.asarray(tokens, dtype=np.int16), allow_pickle=False)
        os.replace(partial, target)
