"""Inference through the Celery ``inference`` queue: a real worker process, Redis broker + results."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from astropt.checkpoints import CheckpointError, save_checkpoint
from astropt.codec import load_codec
from astropt.constants import DEFAULT_BANDS
from astropt.images import Cube
from astropt.inference.pipeline import ReconstructOptions, embed, reconstruct
from astropt.model import GPT, GPTConfig
from service.inference.engine import EngineBusy, InferenceEngine, Work
from state.settings import InferenceSettings

pytestmark = pytest.mark.slow
BROKER = "redis://127.0.0.1:6379/13"
RESULTS = "redis://127.0.0.1:6379/14"


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote")
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=576))
    checkpoint = save_checkpoint(
        root / "best", model, meta={"codec": load_codec("random:0").info.to_dict()}
    )
    queue = f"inference-test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "ASTROPT_INFERENCE_BROKER_URL": BROKER,
        "ASTROPT_INFERENCE_RESULT_BACKEND": RESULTS,
        "ASTROPT_INFERENCE_QUEUE": queue,
        "ASTROPT_INFERENCE_PRECISION": "float32",
        "ASTROPT_DATA_DIR": str(root),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.inference:inference_app",
            "worker",
            "-Q",
            queue,
            "-P",
            "solo",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
        ],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    settings = InferenceSettings(
        backend="celery",
        queue=queue,
        broker_url=BROKER,
        result_backend=RESULTS,
        request_timeout_s=90.0,
        precision="float32",
    )
    engine = InferenceEngine(settings)
    yield engine, checkpoint, model
    worker.terminate()
    worker.wait(20)


def _cube(bands=DEFAULT_BANDS) -> Cube:
    flux = np.random.default_rng(3).gamma(1.0, 0.3, (len(bands), 128, 128)).astype(np.float32)
    return Cube(flux, tuple(bands), ["a warning travels"])


def test_remote_reconstruction_equals_local(remote):
    engine, checkpoint, model = remote
    cube = _cube()
    result = asyncio.run(engine.submit(Work("reconstruct", checkpoint, cube, ReconstructOptions())))
    got = result.value
    codec = load_codec("random:0")
    want = reconstruct(
        [cube], codec, model.eval(), ReconstructOptions(), codec.info.to_dict(), torch.float32
    )[0]
    np.testing.assert_array_equal(got.tokens, want.tokens)
    np.testing.assert_array_equal(got.model_tokens, want.model_tokens)
    np.testing.assert_allclose(got.model, want.model, rtol=1e-5, atol=1e-6)
    assert got.token_accuracy == pytest.approx(want.token_accuracy)
    assert got.warnings == ["a warning travels"] and result.codec_info["spec"] == "random:0"
    assert result.compute_s > 0 and engine.batch_sizes[1] >= 1


def test_remote_embedding_and_errors(remote, tmp_path):
    engine, checkpoint, model = remote
    cube = _cube(("DES-G", "DES-R", "DES-Z"))
    result = asyncio.run(engine.submit(Work("embed", checkpoint, cube, pooling="both")))
    codec = load_codec("random:0")
    want = embed([cube], codec, model.eval(), "both", codec.info.to_dict(), torch.float32)[0]
    np.testing.assert_allclose(result.value["mean"], want["mean"], rtol=1e-5, atol=1e-6)
    with pytest.raises(CheckpointError, match="gone"):
        asyncio.run(
            engine.submit(Work("reconstruct", tmp_path / "nothing", cube, ReconstructOptions()))
        )


def test_no_worker_on_the_queue_is_busy(remote):
    _, checkpoint, _ = remote
    queue = f"nobody-listens-{uuid.uuid4().hex[:8]}"
    lonely = InferenceEngine(
        InferenceSettings(
            backend="celery",
            queue=queue,
            broker_url=BROKER,
            result_backend=RESULTS,
            request_timeout_s=1.0,
        )
    )
    with pytest.raises(EngineBusy, match="no inference worker answered"):
        asyncio.run(lonely.submit(Work("reconstruct", checkpoint, _cube(), ReconstructOptions())))
    with lonely._celery.connection_for_write() as connection:
        assert connection.default_channel.queue_purge(queue) == 1  # the unanswered request
