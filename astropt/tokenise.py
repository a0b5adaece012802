"""Tokenisation: the stage between loading raw flux cubes and batching tokens.

Raw samples (``{"flux": float32[4, H, W], "bands": [...]}``) become AION tokens
here and nowhere else, so tokens of a finite data set can be computed once per
(codec, data set) and cached on disk (:func:`tokenise_dataset`).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from astropt.codec import CodecHandle
from astropt.constants import DEFAULT_BANDS, TOKENS_PER_IMAGE
from astropt.memory import release_free_memory
from astropt.stopping import StopCheck, raise_if_stopped

MODALITY = "images_aion"
POSITIONS = f"{MODALITY}_positions"


def stack_flux(samples: Sequence[dict[str, Any]]) -> np.ndarray:
    """Stack raw samples into one float32 ``[B, 4, H, W]`` array (a copy: callers' data is safe)."""
    if not samples:
        raise ValueError("cannot tokenise an empty batch")
    shapes = {np.shape(s["flux"]) for s in samples}
    if len(shapes) != 1:
        raise ValueError(f"all images in a batch must have the same shape, got {sorted(shapes)}")
    return np.stack([np.asarray(s["flux"], dtype=np.float32) for s in samples])


class TokenCollate:
    """``collate_fn`` turning raw samples into token batches: one codec call per batch."""

    def __init__(self, codec: CodecHandle, bands: tuple[str, ...] = DEFAULT_BANDS):
        self.codec = codec
        self.bands = tuple(bands)

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        tokens = self.codec.encode(stack_flux(samples), self.bands)
        return {MODALITY: tokens, POSITIONS: positions_like(tokens)}


class _FluxBatches(torch.utils.data.IterableDataset):
    """``(start, flux [B, 4, H, W])`` of a finite data set in order, decoded where it runs: in a
    DataLoader worker, when there is one, the file reading and its buffers stay there and only
    each batch's flux array reaches the training process."""

    def __init__(self, dataset: Any, batch_size: int):
        self.dataset, self.batch_size = dataset, batch_size

    def __iter__(self) -> Iterator[tuple[int, np.ndarray | Exception]]:
        n = len(self.dataset)
        for start in range(0, n, self.batch_size):
            try:
                rows = range(start, min(n, start + self.batch_size))
                flux = stack_flux([self.dataset[i] for i in rows])
            except Exception as exc:  # handed over as itself (a worker would wrap its message)
                yield start, exc
                return
            yield start, flux
            del flux
            if torch.utils.data.get_worker_info() is not None:  # in-process, the caller does it
                release_free_memory()


def _reading_workers(n_batches: int) -> int:
    """One decoding process beside the codec, where a fork is cheap and allowed: Linux, more than
    one batch, and not a daemonic process (a Celery prefork child may not have children)."""
    if n_batches < 2 or sys.platform != "linux" or multiprocessing.current_process().daemon:
        return 0
    return 1


def positions_like(tokens: torch.Tensor) -> torch.Tensor:
    b, t = tokens.shape
    return torch.arange(t, dtype=torch.long, device=tokens.device).expand(b, t)


def shift_for_training(
    tokens: torch.Tensor,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Autoregressive inputs ``tokens[:, :-1]`` (positions 0..574) and targets ``tokens[:, 1:]``."""
    inputs = tokens[:, :-1]
    return {MODALITY: inputs, POSITIONS: positions_like(inputs)}, {MODALITY: tokens[:, 1:]}


def restore_first_token(shifted: torch.Tensor, first: int | torch.Tensor = 0) -> torch.Tensor:
    """Put the token dropped by the autoregressive shift back in front: ``[B, 575] -> [B, 576]``.

    ``first`` is the true first token when known (per row), else a constant (the seed used 0).
    """
    if shifted.ndim != 2 or shifted.shape[1] != TOKENS_PER_IMAGE - 1:
        raise ValueError(f"expected [B, {TOKENS_PER_IMAGE - 1}] tokens, got {list(shifted.shape)}")
    head = torch.as_tensor(first, dtype=shifted.dtype, device=shifted.device)
    head = head.reshape(-1, 1).expand(shifted.shape[0], 1)
    return torch.cat([head, shifted], dim=1)


def token_cache_dir() -> Path:
    root = os.environ.get("ASTROPT_DATA_DIR")
    base = (
        Path(root)
        if root
        else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "astropt"
    )
    return base / "tokens"


def tokenise_dataset(
    dataset: Any,
    codec: CodecHandle,
    *,
    bands: tuple[str, ...] = DEFAULT_BANDS,
    batch_size: int = 32,
    cache: bool = True,
    progress: bool = True,
    stop: StopCheck | None = None,
) -> torch.Tensor:
    """Tokens ``int16[N, 576]`` of a finite data set, cached per (data set, codec) fingerprint.

    Kept as int16 (the vocabulary is 10,000) so a split in memory costs 1.15 KB a galaxy; the
    batches are widened to ``Long`` as they are read (:class:`astropt.training.TokenBatches`).

    ``stop`` is asked before every batch; when it turns true :class:`StopRequested` is raised
    and nothing is cached.
    """
    n = len(dataset)
    path = None
    if cache and getattr(dataset, "fingerprint", None):
        path = token_cache_dir() / f"{dataset.fingerprint}-{codec.info.fingerprint}.npy"
        if path.is_file():
            arr = np.load(path, allow_pickle=False)
            if arr.shape == (n, TOKENS_PER_IMAGE):
                return torch.from_numpy(arr.astype(np.int16, copy=False))
    out = np.empty((n, TOKENS_PER_IMAGE), dtype=np.int16)
    n_batches = -(-n // batch_size)
    workers = _reading_workers(n_batches)
    loader = torch.utils.data.DataLoader(
        _FluxBatches(dataset, batch_size),
        batch_size=None,
        num_workers=workers,
        multiprocessing_context="fork" if workers else None,
        prefetch_factor=2 if workers else None,
    )
    batches = tqdm(
        loader, total=n_batches, desc="tokenising", unit="batch", disable=not progress, leave=False
    )
    for start, flux in batches:
        raise_if_stopped(stop, "tokenising")
        if isinstance(flux, Exception):
            raise flux
        tokens = codec.encode(flux.numpy(), bands).numpy()
        out[start : start + len(tokens)] = tokens
        del flux
        release_free_memory()  # decoded images: memory stays flat in the data set's size
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, out, allow_pickle=False)
        tmp.replace(path)
    return torch.from_numpy(out)
