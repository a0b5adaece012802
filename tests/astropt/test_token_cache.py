"""The token cache: keyed by (data set, split, rank) and codec, so it never serves wrong tokens."""

from __future__ import annotations

import pytest
import torch

from astropt.codec import load_codec
from astropt.config import DataSettings
from astropt.data import open_split
from astropt.data.sources import FiniteSplit
from astropt.tokenise import token_cache_dir, tokenise_dataset


@pytest.fixture
def data(tmp_path, monkeypatch) -> DataSettings:
    monkeypatch.setenv("ASTROPT_DATA_DIR", str(tmp_path / "data"))
    return DataSettings(
        source="mock", n_mock=8, mock_seed=1, val_fraction=0.25, path=str(tmp_path / "mock")
    )


def test_cached_tokens_are_the_tokens_of_that_split_and_codec(data) -> None:
    # Guards the cache key: were it to ignore the codec or the split, the second call of a
    # pair below would be served the first one's tokens.
    train, val = open_split(data, "train"), open_split(data, "val")
    codecs = [load_codec("random:0"), load_codec("random:1")]
    fresh = {
        (s, c): tokenise_dataset(split, codec, cache=False, progress=False)
        for s, split in (("train", train), ("val", val))
        for c, codec in enumerate(codecs)
    }
    assert not torch.equal(fresh["train", 0][:2], fresh["train", 1][:2])
    for _ in range(2):  # the first pass writes the cache, the second reads it
        for (s, c), expected in fresh.items():
            split = train if s == "train" else val
            assert torch.equal(tokenise_dataset(split, codecs[c], progress=False), expected), (s, c)
    assert len(list(token_cache_dir().glob("*.npy"))) == 4


def test_a_split_of_several_batches_is_decoded_beside_the_codec_with_the_same_tokens(
    data,
) -> None:
    from astropt import tokenise
    from astropt.data.samples import DataSourceError

    train = open_split(data, "train")
    codec = load_codec("random:0")
    assert tokenise._reading_workers(-(-len(train) // 2)) == 1  # a decoding process runs here
    expected = torch.cat(
        [
            codec.encode(
                tokenise.stack_flux([train[i] for i in range(start, min(len(train), start + 2))])
            )
            for start in range(0, len(train), 2)
        ]
    ).to(torch.int16)
    assert torch.equal(tokenise_dataset(train, codec, batch_size=2, cache=False), expected)

    def read(index: int) -> dict:
        if index == 3:
            raise DataSourceError("shard_3.parquet (row 3): not a flux cube")
        return train[index]

    broken = FiniteSplit(read, list(range(len(train))), "broken")
    with pytest.raises(DataSourceError, match=r"^shard_3\.parquet \(row 3\): not a flux cube$"):
        tokenise_dataset(broken, codec, batch_size=2, cache=False, progress=False)
