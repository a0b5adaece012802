"""The streamed-batches path: ``cache_tokens: false`` and Hugging Face streaming of a local
Parquet file in the seed schema. Guards: it trains, a resume skips exactly the batches the
first attempt consumed (same losses as an uninterrupted run), and object ids are kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from astropt.data import split_of
from astropt.training import train
from astropt.training.attempts import read_attempts
from tests.astropt.seed_schema import IMAGE_COLUMN, write_seed_parquet
from tests.astropt.test_train import StopAt, read_train_losses, tiny_config

pytestmark = pytest.mark.slow
VAL_FRACTION = 0.25


@pytest.fixture(scope="module")
def seed_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("seed-data")
    write_seed_parquet(directory / "train-00000.parquet", 16)
    return directory


def stream_data(kind: str, directory: Path) -> dict:
    common = {"image_column": IMAGE_COLUMN, "val_fraction": VAL_FRACTION}
    if kind == "local-uncached":
        return {"source": "local", "path": str(directory), "cache_tokens": False, **common}
    # cache_tokens false: the streamed path itself (on, a stream is tokenised once: test_token_datasets.py)
    return {
        "source": "hf",
        "hf_dataset": str(directory),
        "streaming": True,
        "shuffle_buffer": 8,
        "cache_tokens": False,
        **common,
    }


@pytest.mark.parametrize("kind", ["local-uncached", "hf-streaming"])
def test_streamed_batches_train_resume_exactly_and_keep_object_ids(
    kind, seed_data, tmp_path, monkeypatch
):
    import datasets

    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)

    def config(run: str):
        return tiny_config(
            tmp_path / run,
            data=stream_data(kind, seed_data),
            max_iters=6,
            eval_interval=6,
            n_val_images=0,
        )

    straight = train(config("a"))
    assert straight.status == "completed" and straight.step == 6
    stopped = train(config("b"), [StopAt(2)])
    assert stopped.step == 2
    resumed = train(config("b"))
    a, b = read_train_losses(Path(straight.out_dir)), read_train_losses(Path(resumed.out_dir))
    assert sorted(b) == list(range(1, 7))
    for step in range(3, 7):  # a stream that did not skip ahead would see other batches here
        assert b[step] == pytest.approx(a[step], abs=1e-5), step
    assert a[6] < a[1]
    assert [(x["resumed_from"], x["first_step"]) for x in read_attempts(resumed.out_dir)] == [
        (None, 1),
        (2, 3),
    ]

    record = json.loads((Path(straight.out_dir) / "data_rank0.json").read_text())
    ids = record["object_ids"]
    assert record["streamed"] and ids, record  # the ids survive the stream into the run record
    assert all(i.startswith("mock-s0-") for i in ids)
    assert all(split_of(i, VAL_FRACTION) == "train" for i in ids)  # no validation galaxy trained on


@pytest.mark.parametrize("index", [0, 3])
def test_an_empty_stream_is_an_error_not_an_endless_loop(index):
    from astropt.training.batches import StreamBatches

    batches = StreamBatches(lambda: iter(()), collate=None, batch_size=2)
    with pytest.raises(ValueError, match="yielded no samples"):
        batches.batch(index)


def test_a_streamed_split_keeps_object_ids_and_splits_by_them(seed_data, monkeypatch):
    # Guards the leak-free split of streams: membership is decided by object id, and the id
    # reaches each sample (a stream that dropped it would fall back to row numbers).
    import datasets

    from astropt.config import DataSettings
    from astropt.data import open_split

    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)
    cfg = DataSettings(**stream_data("hf-streaming", seed_data))
    seen = {s: [sample["object_id"] for sample in open_split(cfg, s)] for s in ("train", "val")}
    everything = [f"mock-s0-{i:08d}" for i in range(16)]
    assert sorted(seen["train"] + seen["val"]) == everything
    assert all(split_of(i, VAL_FRACTION) == s for s, ids in seen.items() for i in ids)
