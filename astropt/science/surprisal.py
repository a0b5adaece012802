"""Surprisal: how unexpected a galaxy is to the autoregressive model that embeds it.

A galaxy's surprisal is the mean negative log-likelihood (nats per token) of its AION codec
tokens under the model: the same next-token cross-entropy training minimises, per galaxy, over
the 575 predicted tokens (positions 1..575 of the 24x24 grid, each predicted from the tokens
before it). It is computed in the embedding pass from the last block's hidden states (the
heads' input), so it costs one output projection per token and no second forward pass, and it
is stored as the catalogue column ``surprisal``. A contrastive model cannot give this score.

Only AION-token models with the autoregressive objective have it; patch models (continuous
outputs) and masked-objective models get no surprisal column.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from astropt.images import centre_crop
from astropt.model import GPT
from astropt.tokenise import MODALITY

SURPRISAL_COLUMN = "surprisal"
ROWS_PER_CHUNK = (
    4  # galaxies whose [T, vocab] logits are held at once (4 x 575 x 10k floats: 92 MB)
)


def has_surprisal(model: GPT, tokeniser: str) -> bool:
    """Whether ``model`` reading ``tokeniser`` inputs gives a surprisal: AION tokens, next-token objective."""
    return tokeniser == "aion" and getattr(model.config, "objective", "ar") == "ar"


def token_targets(tokens: torch.Tensor) -> torch.Tensor:
    """The next-token targets of codec tokens ``Long[B, 576]``: ``tokens[:, 1:]`` (what the
    model predicts from the inputs ``tokens[:, :-1]``, as in training)."""
    return tokens[:, 1:]


def surprisal_of_states(model: GPT, hidden: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """float32 ``[B]``: mean next-token NLL of ``targets`` ``Long[B, T]`` given the last block's
    hidden states ``[B, T, C]`` (after ``ln_f``), in chunks of :data:`ROWS_PER_CHUNK` rows."""
    if hidden.shape[:2] != targets.shape:
        raise ValueError(
            f"hidden states {tuple(hidden.shape[:2])} and targets {tuple(targets.shape)} differ"
        )
    head = model.decoders[MODALITY]
    out = []
    for start in range(0, len(hidden), ROWS_PER_CHUNK):
        logits = head(hidden[start : start + ROWS_PER_CHUNK]).float()
        nll = F.cross_entropy(
            logits.transpose(1, 2), targets[start : start + ROWS_PER_CHUNK].long(), reduction="none"
        )
        out.append(nll.mean(dim=1))
    return torch.cat(out).cpu().numpy().astype(np.float32)


def flux_inputs_and_targets(
    model: Any,
    flux: np.ndarray,
    bands: tuple[str, ...],
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """An :class:`~astropt.science.embedding.EmbedModel`'s inputs of flux ``[B, len(bands), H, W]``
    and, where the model has a surprisal, the next-token targets of the same codec tokens."""
    reader = model.reader
    if model.codec is None or not has_surprisal(model.model, reader.tokeniser):
        return reader.flux_inputs(flux, bands), None
    tokens = model.codec.encode(np.ascontiguousarray(centre_crop(flux), dtype=np.float32), bands)
    return reader.token_inputs(tokens), token_targets(tokens)
