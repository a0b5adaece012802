"""Serving a patch-token model: the runtime's cache loads it without a codec, reconstruct
(predict, masked) un-normalises predicted patches back to flux, embed pools its states."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from astropt.images import Cube
from astropt.inference.pipeline import OptionsError, ReconstructOptions
from astropt.inference.render import panel_titles, render_png, to_fits
from astropt.serving.runtime import InferenceRuntime, RuntimeConfig
from astropt.serving.wire import InferenceRequest
from astropt.training import train
from tests.astropt.test_train_patch_mae import config_for


@pytest.fixture(scope="module")
def mae_checkpoint(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("patch-mae")
    result = train(config_for(tmp, "patch-mae", max_iters=6, eval_interval=6))
    return Path(result.out_dir) / "checkpoints" / "last"


def run(runtime: InferenceRuntime, request: InferenceRequest):
    return runtime.run_batch([request])[0]


def test_reconstruct_and_embed_a_patch_mae_model(mae_checkpoint):
    runtime = InferenceRuntime(RuntimeConfig(device="cpu", torch_threads=1))
    flux = np.random.default_rng(0).normal(0, 0.01, (4, 120, 120)).astype(np.float32)
    flux[:, 50:70, 50:70] += 1.0
    cube = Cube(flux, ("DES-G", "DES-R", "DES-I", "DES-Z"), [])
    result = run(
        runtime,
        InferenceRequest("reconstruct", mae_checkpoint, cube, ReconstructOptions("predict")),
    )
    recon = result.value
    assert recon.codec is None and recon.model.shape == (4, 96, 96)
    assert panel_titles(recon) == ["original", "model", "residual"]
    assert render_png(recon)[:4] == b"\x89PNG" and to_fits(recon)
    # Un-normalised back to flux: the reconstruction has the input's per-patch means.
    crop = flux[:, 12:108, 12:108]
    assert abs(recon.model.mean() - crop.mean()) < 0.05
    masked = run(
        runtime,
        InferenceRequest(
            "reconstruct",
            mae_checkpoint,
            cube,
            ReconstructOptions("masked", keep_fraction=0.5, seed=3),
        ),
    ).value
    assert masked.mode == "masked" and np.isfinite(masked.mse)
    again = run(
        runtime,
        InferenceRequest(
            "reconstruct",
            mae_checkpoint,
            cube,
            ReconstructOptions("masked", keep_fraction=0.5, seed=3),
        ),
    ).value
    np.testing.assert_array_equal(masked.model, again.model)
    vectors = run(runtime, InferenceRequest("embed", mae_checkpoint, cube, pooling="both")).value
    assert set(vectors) == {"mean", "last"} and vectors["mean"].shape == (32,)
    with pytest.raises(OptionsError, match="patch-token"):
        run(
            runtime,
            InferenceRequest("reconstruct", mae_checkpoint, cube, ReconstructOptions("complete")),
        )
