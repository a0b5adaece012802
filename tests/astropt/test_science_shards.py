"""Resumable embedding: shards of bounded rows, a stopped run continued, the same catalogue."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from astropt.checkpoints import save_checkpoint
from astropt.cli import main
from astropt.codec import load_codec
from astropt.model import GPT, GPTConfig
from astropt.science import (
    EmbedOptions,
    SourceSpec,
    embed_catalogue,
    load_embed_model,
    read_catalogue,
)
from astropt.science.shards import work_dir_for

N, SEED, SHARD = 22, 6, 8
OPTIONS = EmbedOptions(pool="centre", centre=2, batch_size=4)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("ckpt") / "best"
    save_checkpoint(
        path,
        GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=576)),
        meta={"codec": load_codec("random:0").info.to_dict()},
    )
    return path


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_embed_model(checkpoint)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return SourceSpec("mock", n=N, seed=SEED, path=str(tmp_path_factory.mktemp("mock") / "m"))


@pytest.fixture(scope="module")
def whole(model, source, tmp_path_factory):
    """An uninterrupted run: the reference."""
    out = tmp_path_factory.mktemp("whole") / "cat"
    result = embed_catalogue(model, source, out, OPTIONS, shard_rows=SHARD)
    return result, out


def stop_after(polls: int):
    seen = []

    def stop() -> bool:
        seen.append(1)
        return len(seen) > polls

    return stop


def table_of(out):
    return pq.read_table(out / "catalogue.parquet")


def test_row_groups_are_the_shards_and_no_work_is_left(whole):
    result, out = whole
    assert result.status == "completed" and result.resumed_from == 0 and result.count == N
    meta = pq.read_metadata(out / "catalogue.parquet")
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [8, 8, 6]
    assert not work_dir_for(out).exists() and sorted(p.name for p in out.parent.iterdir()) == [
        "cat"
    ]
    assert result.manifest["shard_rows"] == SHARD and read_catalogue(out).manifest["count"] == N


def test_a_stopped_run_continues_after_its_last_complete_shard(model, source, whole, tmp_path):
    _, reference = whole
    out = tmp_path / "cat"
    calls = []
    # 5 batches of 4 rows: shards 0 (rows 0-7) and 1 (8-15) are complete, the stop comes in shard 2
    first = embed_catalogue(
        model, source, out, OPTIONS, should_stop=stop_after(5), shard_rows=SHARD
    )
    assert first.status == "cancelled" and first.count == 20 and first.shards_kept == 2
    assert not out.exists()
    work = work_dir_for(out)
    assert sorted(p.name for p in work.iterdir()) == [
        "shard_000000.parquet",
        "shard_000001.parquet",
        "work.json",
    ]
    # a half-written shard file of the crashed run is not taken for a complete one
    (work / "shard_000002.parquet").write_bytes(b"PAR1 truncated")
    second = embed_catalogue(
        model, source, out, OPTIONS, progress=lambda d, t: calls.append(d), shard_rows=SHARD
    )
    assert (
        second.status == "completed"
        and second.resumed_from == 16
        and second.manifest["resumed_from"] == 16
    )
    assert calls == [16, 20, 22]  # only the last shard was embedded again
    assert table_of(out).equals(
        table_of(reference)
    )  # the same rows, bit for bit, in the same order
    ids = read_catalogue(out).object_ids
    assert len(set(ids)) == N and list(ids) == [f"mock-s{SEED}-{i:08d}" for i in range(N)]
    assert not work.exists()


def test_shards_of_another_recipe_are_not_mixed_in(model, source, whole, tmp_path):
    _, reference = whole
    out = tmp_path / "cat"
    other = EmbedOptions(pool="mean", batch_size=4)
    embed_catalogue(model, source, out, other, should_stop=stop_after(3), shard_rows=SHARD)
    assert (work_dir_for(out) / "shard_000000.parquet").is_file()
    result = embed_catalogue(model, source, out, OPTIONS, shard_rows=SHARD)
    assert result.resumed_from == 0 and table_of(out).equals(table_of(reference))


def test_the_cli_continues_an_interrupted_run(checkpoint, source, model, tmp_path, capsys):
    out = tmp_path / "cat"
    embed_catalogue(
        model,
        source,
        out,
        EmbedOptions(pool="last", batch_size=4),
        should_stop=stop_after(2),
        shard_rows=SHARD,
    )
    args = [
        "embed",
        "--model",
        str(checkpoint),
        "--n",
        str(N),
        "--seed",
        str(SEED),
        "--data-path",
        source.path,
        "--pool",
        "last",
        "--batch-size",
        "4",
        "--shard-rows",
        str(SHARD),
        "--threads",
        "1",
        "--quiet",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert "continued after 8 rows" in capsys.readouterr().out
    continued = read_catalogue(out)
    assert main([*args, "--fresh", "--out", str(tmp_path / "fresh")]) == 0
    fresh = read_catalogue(tmp_path / "fresh")
    np.testing.assert_array_equal(continued.embeddings, fresh.embeddings)
    assert list(continued.object_ids) == list(fresh.object_ids)
