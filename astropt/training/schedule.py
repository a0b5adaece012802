"""The learning-rate schedule and the unigram baseline the loop reports."""

from __future__ import annotations

import math

import torch

from astropt.config import TrainConfig


def learning_rate(it: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_lr`` at ``lr_decay_iters``."""
    lr, warmup, decay = config.optim.learning_rate, config.optim.warmup_iters, config.lr_decay_iters
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it >= decay:
        return config.min_lr
    ratio = (it - warmup) / max(1, decay - warmup)
    return config.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - config.min_lr)


def unigram_entropy(tokens: torch.Tensor, vocab: int) -> float:
    """Cross-entropy (nats) of predicting targets from their own unigram frequencies."""
    counts = torch.zeros(vocab, dtype=torch.float64)
    for start in range(0, len(tokens), 4096):  # in blocks: no copy of the whole split
        block = tokens[start : start + 4096, 1:].reshape(-1).long()
        counts += torch.bincount(block, minlength=vocab)[:vocab].double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())
