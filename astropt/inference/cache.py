"""LRU cache of loaded models and their codecs, bounded by count and parameter memory.

Only one compute thread (the API engine's, or an inference worker's task) touches it at a time,
so it needs no lock of its own.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import astropt.codec as codec_module
from astropt.checkpoints import CheckpointError, load_checkpoint
from astropt.codec import CodecHandle, check_same_codec, load_codec
from astropt.run_dir import WEIGHTS_FILE

if TYPE_CHECKING:
    from astropt.model import GPT


@dataclass
class LoadedModel:
    model: GPT
    meta: dict[str, Any]
    codec: CodecHandle | None  # None: a patch-token model
    n_bytes: int
    head: Any = None  # a fine-tuned checkpoint's task head (astropt.finetune.head.LoadedHead)

    @property
    def codec_info(self) -> dict[str, Any]:
        return dict(self.meta.get("codec") or {})


@dataclass(frozen=True)
class WeightsVersion:
    """A checkpoint's weights as they are on disk now: rewritten weights load again."""

    directory: str
    mtime: float


def module_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


# Loads a fine-tuned checkpoint's task head: (directory, meta, device) -> an object whose
# ``head`` is the module (astropt.finetune.head.load_head; the serving runtime passes it in).
HeadLoader = Callable[[Path, dict[str, Any], torch.device], Any]


class ModelCache:
    """Loaded models by checkpoint, least recently used evicted past ``max_models`` or
    ``max_bytes``; with ``load_head``, a fine-tuned checkpoint comes with its task head."""

    def __init__(
        self,
        device: torch.device,
        max_models: int,
        max_bytes: int,
        load_head: HeadLoader | None = None,
    ):
        self.device = device
        self.max_models = max_models
        self.max_bytes = max_bytes
        self.load_head = load_head
        self._entries: OrderedDict[WeightsVersion, LoadedModel] = OrderedDict()
        self.loads = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def n_bytes(self) -> int:
        codecs = {
            id(e.codec): module_bytes(e.codec.codec) for e in self._entries.values() if e.codec
        }
        return sum(e.n_bytes for e in self._entries.values()) + sum(codecs.values())

    def get(self, checkpoint: Path) -> LoadedModel:
        """The loaded model of a checkpoint directory (reloaded when its weights changed)."""
        weights = checkpoint / WEIGHTS_FILE
        try:
            key = WeightsVersion(str(checkpoint.resolve()), weights.stat().st_mtime)
        except OSError as exc:
            raise CheckpointError(f"checkpoint {checkpoint} is gone: {exc}") from exc
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry
        entry = self._load(checkpoint)
        self._entries[key] = entry
        self.loads += 1
        self._evict()
        return entry

    def _load(self, checkpoint: Path) -> LoadedModel:
        loaded = self._load_model(checkpoint)
        if self.load_head is not None and isinstance(loaded.meta.get("finetune"), dict):
            loaded.head = self.load_head(checkpoint, loaded.meta, self.device)
            loaded.n_bytes += module_bytes(loaded.head.head)
        return loaded

    def _load_model(self, checkpoint: Path) -> LoadedModel:
        model, meta = load_checkpoint(checkpoint, self.device)
        if meta.get("tokeniser") == "patch":
            return LoadedModel(model.eval(), meta, None, module_bytes(model))
        codec_info = meta.get("codec")
        if not isinstance(codec_info, dict) or "spec" not in codec_info:
            raise CheckpointError(
                f"checkpoint {checkpoint.name} does not record the codec it was trained with; "
                "it cannot be used for inference on images"
            )
        codec = load_codec(codec_info["spec"], self.device)
        check_same_codec(codec_info, codec.info, f"checkpoint {checkpoint.name}")
        return LoadedModel(model.eval(), meta, codec, module_bytes(model))

    def _evict(self) -> None:
        while len(self._entries) > 1 and (
            len(self._entries) > self.max_models or self.n_bytes > self.max_bytes
        ):
            _, old = self._entries.popitem(last=False)
            self.evictions += 1
            if old.codec is not None and all(
                e.codec is not old.codec for e in self._entries.values()
            ):
                codec_module.evict_codec(old.codec)
