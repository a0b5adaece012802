"""Token batches for training and evaluation, addressed by a global batch index.

Addressing batches by index (not by iterator position) is what makes resume exact:
after a restart at optimiser step ``k`` the loop asks for batch ``k * grad_accum``
and gets the very batch the uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from astropt.tokenise import MODALITY, TokenCollate


class TokenBatches:
    """A finite, pre-tokenised split: each epoch is a seeded permutation.

    ``tokens`` is an integer ``[N, T]`` tensor in memory (int16 from the token cache), or anything
    indexed the same way by a list of
    rows (:class:`astropt.tokens.splits.TokenRows`: a token data set read per batch from disk).
    """

    def __init__(
        self, tokens: torch.Tensor | Any, batch_size: int, seed: int, shuffle: bool = True
    ):
        if len(tokens) == 0:
            raise ValueError("the data split is empty: add data or lower data.val_fraction")
        self.tokens = tokens
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self._perms: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.tokens)

    def _perm(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(len(self.tokens))
        if epoch not in self._perms:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {epoch: torch.randperm(len(self.tokens), generator=gen)}
        return self._perms[epoch]

    def batch(self, index: int) -> torch.Tensor:
        n = len(self.tokens)
        positions = range(index * self.batch_size, (index + 1) * self.batch_size)
        rows = [int(self._perm(p // n)[p % n]) for p in positions]
        batch = self.tokens[rows]
        # Codec tokens are held as int16 (the token cache) and widened per batch; crops stay float.
        return batch if batch.is_floating_point() else batch.long()


class StreamBatches:
    """A streamed split, tokenised batch by batch; restarts and skips ahead on resume."""

    def __init__(
        self,
        make_iterable: Callable[[], Iterable[dict[str, Any]]],
        collate: TokenCollate,
        batch_size: int,
    ):
        self.make_iterable = make_iterable
        self.collate = collate
        self.batch_size = batch_size
        self._iter: Iterator[dict[str, Any]] | None = None
        self._next_index = 0
        self._pass_empty = True
        self.seen_ids: set[str] = (
            set()
        )  # object ids this process trained on (the stream has no index)

    def _restart(self) -> None:
        self._iter = iter(self.make_iterable())
        self._next_index = 0
        self._pass_empty = True

    def _raw_batch(self) -> list[dict[str, Any]]:
        assert self._iter is not None
        samples: list[dict[str, Any]] = []
        while len(samples) < self.batch_size:
            try:
                samples.append(next(self._iter))
                self._pass_empty = False
            except StopIteration:
                if self._pass_empty:  # a whole pass without a sample: it would loop for ever
                    raise ValueError(
                        "the data stream yielded no samples (an empty split? "
                        "check data.val_fraction and the data)"
                    ) from None
                self._iter = iter(self.make_iterable())  # next pass over the stream
                self._pass_empty = True
        return samples

    def batch(self, index: int) -> torch.Tensor:
        if self._iter is None or index < self._next_index:
            self._restart()
        while self._next_index < index:  # skip what an earlier run already consumed
            self._raw_batch()
            self._next_index += 1
        self._next_index += 1
        samples = self._raw_batch()
        self.seen_ids.update(str(s["object_id"]) for s in samples if s.get("object_id") is not None)
        return self.collate(samples)[MODALITY]


class FixedBatches:
    """A fixed list of batches (evaluation), computed once and kept in memory."""

    def __init__(self, source: TokenBatches | StreamBatches, n_batches: int, offset: int = 0):
        self.batches = [source.batch(offset + i) for i in range(n_batches)]

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)
