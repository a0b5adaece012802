"""The serving engine without HTTP: LRU model cache, recovery after a failing batch, back-pressure."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest
import torch

from astropt.checkpoints import CheckpointError, save_checkpoint
from astropt.codec import load_codec
from astropt.constants import DEFAULT_BANDS
from astropt.images import Cube
from astropt.inference.cache import ModelCache, module_bytes
from astropt.inference.pipeline import ReconstructOptions
from astropt.model import GPT, GPTConfig
from astropt.torch_policy import inference_dtype as choose_precision
from service.inference.engine import EngineBusy, InferenceEngine, Work
from state.settings import InferenceSettings


def _checkpoint(path, seed: int = 0):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=576))
    return save_checkpoint(path, model, meta={"codec": load_codec("random:0").info.to_dict()})


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    return [_checkpoint(root / f"m{k}", seed=k) for k in range(3)]


@pytest.fixture()
def cube() -> Cube:
    return Cube(
        np.random.default_rng(0).gamma(1.0, 0.3, (4, 128, 128)).astype(np.float32), DEFAULT_BANDS
    )


def test_cache_is_lru_bounded_by_count(checkpoints):
    cache = ModelCache(torch.device("cpu"), max_models=2, max_bytes=2**40)
    first = cache.get(checkpoints[0])
    cache.get(checkpoints[1])
    assert cache.get(checkpoints[0]) is first and cache.loads == 2  # a hit moves it to the end
    cache.get(checkpoints[2])  # evicts checkpoints[1], the least recently used
    assert len(cache) == 2 and cache.evictions == 1
    assert cache.get(checkpoints[0]) is first and cache.loads == 3
    cache.get(checkpoints[1])
    assert cache.loads == 4 and cache.evictions == 2


def test_cache_is_bounded_by_memory_and_reloads_changed_weights(checkpoints, tmp_path):
    one = module_bytes(ModelCache(torch.device("cpu"), 4, 2**40).get(checkpoints[0]).model)
    cache = ModelCache(torch.device("cpu"), max_models=4, max_bytes=one + 1)
    cache.get(checkpoints[0])
    cache.get(checkpoints[1])
    assert len(cache) == 1  # two models do not fit: only the newest stays
    path = _checkpoint(tmp_path / "changing", seed=5)
    before = cache.get(path)
    _checkpoint(path, seed=6)
    stat = (path / "model.safetensors").stat()
    os.utime(path / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    after = cache.get(path)
    assert after is not before
    assert not torch.equal(next(after.model.parameters()), next(before.model.parameters()))


def test_failed_batch_does_not_kill_the_engine(checkpoints, cube, tmp_path):
    engine = InferenceEngine(InferenceSettings(max_wait_ms=0.0, torch_threads=1))
    try:
        with pytest.raises(CheckpointError):
            asyncio.run(
                engine.submit(Work("reconstruct", tmp_path / "missing", cube, ReconstructOptions()))
            )
        result = asyncio.run(
            engine.submit(Work("reconstruct", checkpoints[0], cube, ReconstructOptions()))
        )
        assert result.batch_size == 1 and result.value.model.shape == (4, 96, 96)
        assert engine.stats()["batch_sizes"] == {1: 1}
    finally:
        engine.close()


@pytest.mark.slow
def test_queue_limit_and_timeout_give_busy(checkpoints, cube):
    settings = InferenceSettings(
        max_wait_ms=0.0, max_queue=1, request_timeout_s=0.5, torch_threads=1
    )
    engine = InferenceEngine(settings)
    slow = Work(
        "reconstruct", checkpoints[0], cube, ReconstructOptions(mode="complete", keep_fraction=0.6)
    )

    async def scenario() -> list[BaseException | object]:
        running = asyncio.create_task(engine.submit(slow))  # ~230 sampled tokens: seconds
        while not slow.future.running():  # wait until the compute thread has taken it
            await asyncio.sleep(0.01)
        waiting = asyncio.create_task(
            engine.submit(Work("reconstruct", checkpoints[0], cube, ReconstructOptions()))
        )
        while not engine._pending:
            await asyncio.sleep(0.01)
        refused = asyncio.create_task(
            engine.submit(Work("reconstruct", checkpoints[0], cube, ReconstructOptions()))
        )
        return await asyncio.gather(running, waiting, refused, return_exceptions=True)

    try:
        running, waiting, refused = asyncio.run(scenario())
        assert isinstance(refused, EngineBusy) and "queue is full" in str(refused)
        assert isinstance(waiting, EngineBusy) and "waited more than" in str(waiting)
        assert isinstance(running, EngineBusy)  # the slow one outlived its own timeout too
    finally:
        engine.close()


def test_precision_choice():
    assert choose_precision("float32", torch.device("cpu")) == torch.float32
    assert choose_precision("bfloat16", torch.device("cpu")) == torch.bfloat16
    assert choose_precision("auto", torch.device("cpu")) in (torch.float32, torch.bfloat16)


def test_the_queue_is_bounded_by_image_bytes(checkpoints):
    crop = Cube(np.ones((4, 96, 96), np.float32), DEFAULT_BANDS)  # 147,456 bytes
    full = Cube(np.ones((4, 160, 160), np.float32), DEFAULT_BANDS)  # 409,600 bytes
    settings = InferenceSettings(
        max_wait_ms=0.0, max_queued_mb=0.2, torch_threads=1
    )  # 209,715 bytes
    engine = InferenceEngine(settings)
    try:
        with pytest.raises(EngineBusy, match="would pass the limit") as refused:
            asyncio.run(
                engine.submit(
                    Work("reconstruct", checkpoints[0], full, ReconstructOptions(mode="codec"))
                )
            )
        assert refused.value.retry_after_s >= 1
        result = asyncio.run(
            engine.submit(
                Work("reconstruct", checkpoints[0], crop, ReconstructOptions(mode="codec"))
            )
        )
        assert result.value.codec.shape == (4, 96, 96)
        assert engine.stats()["queued_bytes"] == 0  # released when its batch was taken
    finally:
        engine.close()


def test_a_parsed_upload_keeps_only_its_central_crop():
    flux = np.arange(4 * 200 * 160, dtype=np.float32).reshape(4, 200, 160)
    cube = Cube(flux, DEFAULT_BANDS, ["w"]).central_crop()
    assert cube.flux.shape == (4, 96, 96) and cube.flux.base is None  # its own array, not a view
    np.testing.assert_array_equal(cube.flux, flux[:, 52:148, 32:128])
    assert cube.bands == DEFAULT_BANDS and cube.warnings == ["w"]
