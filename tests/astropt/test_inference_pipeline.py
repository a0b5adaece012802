"""Reconstruction modes, metrics, embeddings and rendering with a real (tiny) checkpoint."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from astropt.checkpoints import load_checkpoint, save_checkpoint
from astropt.codec import CodecError, load_codec
from astropt.constants import DEFAULT_BANDS
from astropt.images import Cube
from astropt.inference.pipeline import (
    OptionsError,
    ReconstructOptions,
    centre_crop,
    embed,
    reconstruct,
)
from astropt.inference.render import png_size, render_png, to_fits, to_npy
from astropt.inference.uploads import parse_upload
from astropt.model import GPT, GPTConfig


@pytest.fixture(scope="module")
def codec():
    return load_codec("random:0")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, codec):
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=576))
    path = tmp_path_factory.mktemp("ckpt") / "best"
    save_checkpoint(path, model, meta={"codec": codec.info.to_dict()})
    return load_checkpoint(path)


@pytest.fixture(scope="module")
def cubes() -> list[Cube]:
    rng = np.random.default_rng(1)
    return [
        Cube(rng.gamma(1.0, 0.5, (4, 128, 112)).astype(np.float32), DEFAULT_BANDS) for _ in range(2)
    ]


def test_codec_mode_is_the_round_trip(codec, cubes):
    results = reconstruct(cubes, codec, None, ReconstructOptions(mode="codec"))
    crops = np.stack([centre_crop(c.flux) for c in cubes])
    expected = codec.decode(codec.encode(crops)).numpy()
    for r, want, crop in zip(results, expected, crops, strict=True):
        assert r.model is None and r.token_accuracy is None
        np.testing.assert_allclose(r.codec, want, rtol=1e-5, atol=1e-6)
        assert (
            r.mse
            == r.codec_mse
            == pytest.approx(float(np.mean((want.astype(np.float64) - crop) ** 2)))
        )


def test_predict_is_teacher_forced_argmax_with_true_first_token(codec, checkpoint, cubes):
    model, meta = checkpoint
    results = reconstruct(cubes, codec, model, ReconstructOptions(), meta["codec"])
    tokens = torch.stack([torch.as_tensor(r.tokens) for r in results])
    positions = torch.arange(575).expand(len(cubes), 575)
    with torch.no_grad():
        logits, _ = model({"images_aion": tokens[:, :-1], "images_aion_positions": positions})
    argmax = logits["images_aion"].argmax(-1).numpy()
    for i, r in enumerate(results):
        assert r.model_tokens[0] == r.tokens[0]
        np.testing.assert_array_equal(r.model_tokens[1:], argmax[i])
        assert r.token_accuracy == pytest.approx(float(np.mean(argmax[i] == r.tokens[1:])))
        decoded = codec.decode(torch.as_tensor(r.model_tokens)[None]).numpy()[0]
        np.testing.assert_allclose(r.model, decoded, rtol=1e-5, atol=1e-6)
        assert r.mse == pytest.approx(
            float(np.mean((r.model.astype(np.float64) - r.original) ** 2))
        )


def test_complete_keeps_prefix_and_is_deterministic_with_seed(codec, checkpoint, cubes):
    model, meta = checkpoint
    options = ReconstructOptions(
        mode="complete", keep_fraction=0.98, temperature=1.0, top_k=50, seed=7
    )
    first = reconstruct(cubes[:1], codec, model, options, meta["codec"])[0]
    again = reconstruct(cubes[:1], codec, model, options, meta["codec"])[0]
    kept = options.n_kept
    assert kept == 564
    np.testing.assert_array_equal(first.model_tokens[:kept], first.tokens[:kept])
    np.testing.assert_array_equal(first.model_tokens, again.model_tokens)
    other = ReconstructOptions(
        mode="complete", keep_fraction=0.98, temperature=1.0, top_k=50, seed=8
    )
    differs = reconstruct(cubes[:1], codec, model, other, meta["codec"])[0]
    assert not np.array_equal(first.model_tokens, differs.model_tokens)
    hits = first.model_tokens[kept:] == first.tokens[kept:]
    assert first.token_accuracy == pytest.approx(float(hits.mean()))


def test_three_band_cube_in_a_mixed_batch(codec, checkpoint, cubes):
    model, meta = checkpoint
    grz = Cube(cubes[0].flux[[0, 1, 3]].copy(), ("DES-G", "DES-R", "DES-Z"))
    results = reconstruct(
        [cubes[0], grz, cubes[1]], codec, model, ReconstructOptions(), meta["codec"]
    )
    assert [r.bands for r in results] == [DEFAULT_BANDS, grz.bands, DEFAULT_BANDS]
    three = results[1]
    assert three.original.shape == (3, 96, 96) and three.model.shape == (4, 96, 96)
    diff = three.model[[0, 1, 3]].astype(np.float64) - three.original
    assert three.mse == pytest.approx(float(np.mean(diff**2)))


def test_codec_mismatch_is_refused(checkpoint, cubes):
    model, meta = checkpoint
    other = load_codec("random:1")
    with pytest.raises(CodecError, match="cannot be mixed"):
        reconstruct(cubes, other, model, ReconstructOptions(), meta["codec"])
    with pytest.raises(CodecError):
        embed(cubes, other, model, "mean", meta["codec"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "dream"},
        {"keep_fraction": 0.0},
        {"keep_fraction": 1.5},
        {"temperature": -1.0},
        {"top_k": 0},
    ],
)
def test_bad_options(kwargs):
    with pytest.raises(OptionsError):
        ReconstructOptions(**kwargs)


def test_model_modes_need_a_model(codec, cubes):
    with pytest.raises(OptionsError, match="needs a model"):
        reconstruct(cubes, codec, None, ReconstructOptions())


def test_embeddings_shape_and_batch_invariance(codec, checkpoint, cubes):
    model, meta = checkpoint
    both = embed(cubes, codec, model, "both", meta["codec"])
    assert set(both[0]) == {"mean", "last"} and both[0]["mean"].shape == (32,)
    alone = embed(cubes[1:], codec, model, "mean", meta["codec"])[0]["mean"]
    np.testing.assert_allclose(alone, both[1]["mean"], rtol=1e-4, atol=1e-5)
    assert not np.allclose(both[0]["mean"], both[1]["mean"])


def test_png_panels_fits_and_npy(codec, checkpoint, cubes):
    model, meta = checkpoint
    recon = reconstruct(cubes[:1], codec, model, ReconstructOptions(), meta["codec"])[0]
    for panel, n in (("all", 4), ("single", 1)):
        image = Image.open(io.BytesIO(render_png(recon, panel)))
        assert image.format == "PNG" and image.size == png_size(n) and image.mode == "RGB"
    assert png_size(4) == (4 * 192 + 3 * 4, 192 + 16)
    codec_only = reconstruct(cubes[:1], codec, None, ReconstructOptions(mode="codec"))[0]
    assert Image.open(io.BytesIO(render_png(codec_only))).size == png_size(3)
    back = parse_upload(to_fits(recon), "out.fits")
    assert back.bands == DEFAULT_BANDS
    np.testing.assert_array_equal(back.flux, recon.model)
    np.testing.assert_array_equal(np.load(io.BytesIO(to_npy(recon))), recon.model)
