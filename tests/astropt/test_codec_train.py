"""The codec trainer: loss in sigma units, exact resume, collapse guards, CLI validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from astropt.codec import load_codec, random_codec
from astropt.codec_training.commands import main as codec_main
from astropt.codec_training.objective import (
    compress,
    compressed_slope,
    flux_loss,
    spread_init,
    weighted_loss,
)
from astropt.codec_training.trainer import TRAINING_CARD, CodecTrainConfig, lr_at, train_codec
from astropt.constants import DEFAULT_BANDS

BANDS = list(DEFAULT_BANDS)


def test_weighted_loss_is_chi_square_in_sigma_units() -> None:
    codec = random_codec(0)
    rng = np.random.default_rng(1)
    truth = torch.from_numpy(rng.uniform(0.0, 0.5, size=(2, 4, 96, 96)).astype(np.float32))
    sigma = torch.tensor([[0.004, 0.006, 0.010, 0.012]] * 2)
    # A reconstruction off by exactly 0.1 sigma everywhere: chi^2 per pixel = 0.01.
    pred_c = compress(codec, truth + 0.1 * sigma[:, :, None, None], BANDS, clamp=False)
    loss = weighted_loss(codec, pred_c, truth, sigma, BANDS, relative_floor=0.0)
    assert loss.item() == pytest.approx(0.01, rel=0.02)
    # Huber only changes residuals beyond delta: 0.1 sigma is still chi^2 ...
    huber = weighted_loss(codec, pred_c, truth, sigma, BANDS, relative_floor=0.0, huber_delta=3.0)
    assert huber.item() == pytest.approx(0.01, rel=0.02)
    # ... while a 30 sigma residual counts 2 * 3 * (30 - 1.5) = 171 instead of 900.
    sigma_c = compressed_slope(codec, truth) * sigma[:, :, None, None]
    far = compress(codec, truth, BANDS, clamp=False) + 30 * sigma_c
    assert weighted_loss(codec, far, truth, sigma, BANDS, 0.0, 3.0).item() == pytest.approx(
        171, rel=0.05
    )


def test_flux_loss_counts_a_uniform_sky_offset_like_the_pixel_chi_square() -> None:
    codec = random_codec(0)
    truth = torch.zeros(2, 4, 96, 96)
    sigma = torch.tensor([[0.004, 0.006, 0.010, 0.012]] * 2)
    offset = compress(codec, truth + 0.1 * sigma[:, :, None, None], BANDS, clamp=False)
    pixel = weighted_loss(codec, offset, truth, sigma, BANDS, relative_floor=0.0)
    assert flux_loss(codec, offset, truth, sigma, 0.0).item() == pytest.approx(
        pixel.item(), rel=0.02
    )
    # A +-0.1 sigma checkerboard has the same pixel chi^2 but no flux error at all.
    sign = torch.ones(96, 96)
    sign[::2, ::2] = sign[1::2, 1::2] = -1
    checker = compress(codec, truth + 0.1 * sigma[:, :, None, None] * sign, BANDS, clamp=False)
    assert weighted_loss(codec, checker, truth, sigma, BANDS, 0.0).item() == pytest.approx(
        0.01, rel=0.02
    )
    assert flux_loss(codec, checker, truth, sigma, 0.0).item() < 1e-4
    # The floor caps very bright scenes: a 1% error on a huge flux counts (1/0.5)^2 / 9216 at most.
    bright = torch.full((1, 4, 96, 96), 1.0)
    off = compress(codec, bright * 1.01, BANDS, clamp=False)
    capped = flux_loss(codec, off, bright, sigma[:1], 0.005).item()
    assert capped == pytest.approx(4.0 / 9216, rel=0.05)


def test_warm_start_copies_the_shipped_weights_and_refuses_another_shape(tmp_path) -> None:
    from astropt.codec import build_codec, codec_config, fingerprint
    from astropt.codec_training.trainer import warm_start

    codec = build_codec(codec_config(load_codec("shipped").codec))
    card = warm_start(codec, "shipped", torch.zeros(1, 4, 96, 96), BANDS)
    assert fingerprint(codec) == load_codec("shipped").info.fingerprint == card["fingerprint"]
    assert card["total_train_seconds"] > 0
    narrow = build_codec(CodecTrainConfig(out="", hidden_dims=16).codec_args())
    with pytest.raises(ValueError, match="architecture"):
        warm_start(narrow, "shipped", torch.zeros(1, 4, 96, 96), BANDS)


def test_compress_leaves_the_callers_tensor_alone() -> None:
    codec = random_codec(0)
    flux = torch.full((1, 4, 96, 96), 100.0)  # above every band's clamp
    compress(codec, flux, BANDS, clamp=True)
    assert torch.all(flux == 100.0)


def test_spread_init_puts_latents_across_fsq_levels() -> None:
    codec = random_codec(3)
    noisy = torch.randn(2, 4, 96, 96) * 0.01
    spread_init(codec, noisy, BANDS)
    before = torch.unique(codec.quantizer.encode(_latents(random_codec(3), noisy))).numel()
    after = torch.unique(codec.quantizer.encode(_latents(codec, noisy))).numel()
    assert after > 100
    assert after > 2 * before


def _latents(codec: torch.nn.Module, noisy: torch.Tensor) -> torch.Tensor:
    from aion.modalities import LegacySurveyImage

    with torch.no_grad():
        return codec._encode(LegacySurveyImage(flux=noisy.clone(), bands=BANDS))


def test_learning_rate_warms_up_then_decays_to_the_floor() -> None:
    cfg = CodecTrainConfig(out="", steps=100, lr=1e-3, warmup=10, min_lr_fraction=0.1)
    assert lr_at(cfg, 0) == pytest.approx(1e-4)
    assert lr_at(cfg, 9) == pytest.approx(1e-3)
    assert lr_at(cfg, 100) == pytest.approx(1e-4)
    assert lr_at(cfg, 50) < lr_at(cfg, 20)


def _tiny(out: str, steps: int) -> CodecTrainConfig:
    return CodecTrainConfig(
        out=out,
        steps=steps,
        batch_size=2,
        pool_size=4,
        val_size=2,
        hidden_dims=16,
        num_consecutive=1,
        warmup=2,
        log_every=1,
        eval_every=100,
        checkpoint_every=1,
        ema_decay=0.9,
    )


@pytest.mark.slow
def test_training_is_reproducible_and_resume_is_exact(tmp_path) -> None:
    straight = train_codec(_tiny(str(tmp_path / "a"), 4), progress=False)
    train_codec(_tiny(str(tmp_path / "b"), 2), progress=False)
    resumed = train_codec(_tiny(str(tmp_path / "b"), 4), progress=False)  # continues at step 2
    card_a = json.loads((straight / TRAINING_CARD).read_text())
    card_b = json.loads((resumed / TRAINING_CARD).read_text())
    assert card_a["steps_done"] == card_b["steps_done"] == 4
    assert card_a["fingerprint"] == card_b["fingerprint"]
    # The export is a regular AION-layout codec: it loads and encodes.
    handle = load_codec(str(resumed))
    assert handle.info.fingerprint == card_b["fingerprint"]
    assert handle.encode(np.zeros((1, 4, 96, 96), np.float32)).shape == (1, 576)
    state = torch.load(tmp_path / "b" / "checkpoints" / "last" / "optimizer.pt", weights_only=True)
    assert state["state"]  # optimiser moments were saved and load without pickle
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert all(r["batch_codes"] >= 1 for r in log)


def test_cli_rejects_bad_training_settings(tmp_path, capsys) -> None:
    assert codec_main(["codec", "train", "--out", str(tmp_path), "--hidden-dims", "30"]) == 2
    assert "divisible by 4" in capsys.readouterr().err
    assert codec_main(["codec", "train", "--out", str(tmp_path), "--steps", "0"]) == 2
    assert "--steps must be >= 1" in capsys.readouterr().err
    assert codec_main(["codec", "train", "--out", str(tmp_path), "--range-compression", "0"]) == 2
    assert "--range-compression must be > 0" in capsys.readouterr().err


def test_training_forward_equals_public_encode_then_decode() -> None:
    """The differentiable path the trainer optimises is exactly decode(encode(x))."""
    from astropt.codec import CodecHandle, CodecInfo
    from astropt.codec_training.objective import forward_compressed
    from astropt.data.mock import simulate_galaxy

    codec = random_codec(5)
    flux = torch.from_numpy(np.stack([simulate_galaxy(11, i)["flux"] for i in range(2)]))
    spread_init(codec, flux, BANDS)
    codec.eval()
    with torch.no_grad():
        pred_c, _ = forward_compressed(codec, flux, BANDS)
        train_path = codec._reverse_range_compress(pred_c)
    handle = CodecHandle(codec, CodecInfo("test", "random", "x", False))
    public = handle.decode(handle.encode(flux.numpy()))
    torch.testing.assert_close(train_path, public, rtol=1e-4, atol=1e-6)


def test_weight_average_follows_the_weights_and_swaps_back() -> None:
    from astropt.codec_training.trainer import WeightAverage

    layer = torch.nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.fill_(0.0)
    average = WeightAverage(layer, decay=0.5)
    with torch.no_grad():
        layer.weight.fill_(4.0)
    average.update(layer)  # 0.5 * 0 + 0.5 * 4
    average.update(layer)  # 0.5 * 2 + 0.5 * 4
    assert torch.allclose(average.shadow["weight"], torch.full((1, 2), 3.0))
    with average.applied(layer):
        assert torch.allclose(layer.weight, torch.full((1, 2), 3.0))
    assert torch.allclose(layer.weight, torch.full((1, 2), 4.0))


def test_range_compression_is_saved_loaded_fingerprinted_and_warm_startable(tmp_path) -> None:
    from astropt.codec import build_codec, fingerprint, save_codec
    from astropt.codec_training.trainer import warm_start

    assert "range_compression_factor" not in CodecTrainConfig(out="").codec_args()  # AION's keys
    args = CodecTrainConfig(out="", range_compression=0.1).codec_args()
    codec = build_codec(args)
    assert codec.range_compression_factor == 0.1
    # Wider arcsinh: 1 nanomaggy is still nearly linear (10 * 0.1 * asinh(10) = 3.0, not 0.53).
    one = torch.ones(1, 4, 96, 96)
    assert compress(codec, one, BANDS, clamp=False).mean().item() == pytest.approx(2.998, abs=1e-3)
    # Fine-tuning the shipped codec to another compression copies its weights ...
    warm_start(codec, "shipped", torch.zeros(1, 4, 96, 96), BANDS)
    shipped = load_codec("shipped")
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            codec.state_dict().values(), shipped.codec.state_dict().values(), strict=True
        )
    )
    # ... but the same weights behind another compression make other tokens: other fingerprint.
    assert fingerprint(codec) != shipped.info.fingerprint
    save_codec(codec, tmp_path / "wide")
    loaded = load_codec(str(tmp_path / "wide"))
    assert loaded.codec.range_compression_factor == 0.1
    assert loaded.info.fingerprint == fingerprint(codec)
    flux = np.full((1, 4, 96, 96), 0.5, np.float32)
    assert not torch.equal(loaded.encode(flux), shipped.encode(flux))
