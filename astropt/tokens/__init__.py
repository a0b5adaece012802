"""Token data sets: tokenise a survey once (in parallel, resumably), then train, embed and probe
from the tokens. ``format`` (the files and the manifest), ``rows`` (reading a source's rows in
DataLoader workers), ``make`` (:func:`tokenise`), ``reader`` (:func:`open_token_dataset`),
``splits`` (train/val rows for training), ``commands`` (``astropt tokenise``)."""

from astropt.tokens.format import TokenDatasetError, estimate_bytes
from astropt.tokens.make import TokeniseConfig, TokeniseResult, finalize_manifest, tokenise
from astropt.tokens.reader import TokenDataset, open_token_dataset

__all__ = [
    "TokenDataset",
    "TokenDatasetError",
    "TokeniseConfig",
    "TokeniseResult",
    "estimate_bytes",
    "finalize_manifest",
    "open_token_dataset",
    "tokenise",
]
