"""The codec shipped inside the package: offline loading, quality, stable identity."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from astropt.codec import SHIPPED_DIR, WEIGHTS_NAME, fingerprint, load_codec
from astropt.codec import layout as codec_mod
from astropt.codec_training.evaluate import BAR, EVAL_SEED, evaluate_codec
from astropt.codec_training.trainer import TRAINING_CARD
from astropt.data.mock import simulate_galaxy

# Measured on the small sample below when the codec was shipped, plus a margin.
GALAXY_RMS_NOW = 1.3
MEDIAN_GALAXY_RMS_NOW = 0.8
CROSSCHECK_GALAXY_RMS_NOW = 2.5


def test_shipped_codec_is_small_and_has_aions_vocabulary() -> None:
    weights = SHIPPED_DIR / WEIGHTS_NAME
    assert weights.stat().st_size <= 10 * 1024 * 1024
    config = json.loads((SHIPPED_DIR / codec_mod.CONFIG_NAME).read_text())
    assert config["quantizer_levels"] == [8, 5, 5, 5, 5]
    assert config["n_compressions"] == 2 and config["embedding_dim"] == 5


def test_shipped_codec_loads_offline_and_tokenises_a_galaxy() -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    handle = load_codec("shipped")
    assert handle.info.source == "shipped" and handle.info.trained
    galaxy = simulate_galaxy(EVAL_SEED, 0)
    tokens = handle.encode(galaxy["flux"][None])
    assert tokens.shape == (1, 576)
    assert int(tokens.min()) >= 0 and int(tokens.max()) < 10_000
    assert handle.decode(tokens).shape == (1, 4, 96, 96)


def test_default_codec_offline_is_the_shipped_one() -> None:
    default = load_codec("default")
    assert default.info.source == "shipped"
    assert default.info.fingerprint == load_codec("shipped").info.fingerprint


def test_fingerprint_matches_the_trainers_record_and_fresh_loads() -> None:
    recorded = json.loads((SHIPPED_DIR / TRAINING_CARD).read_text())["fingerprint"]
    assert load_codec("shipped").info.fingerprint == recorded
    # Two independent loads of the committed weights file (bypassing the per-process cache).
    assert fingerprint(codec_mod._load_local(SHIPPED_DIR)) == recorded
    assert fingerprint(codec_mod._load_local(SHIPPED_DIR)) == recorded


@pytest.mark.slow
def test_fingerprint_is_the_same_in_another_process() -> None:
    code = "from astropt.codec import load_codec; print(load_codec('shipped').info.fingerprint)"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == load_codec("shipped").info.fingerprint


@functools.lru_cache(maxsize=2)
def _small_sample_report(generator: str = "mock") -> dict:
    # A different seed from the model card's evaluation (2026); still held out from training.
    return evaluate_codec("shipped", n=48, seed=EVAL_SEED + 1, generator=generator)


@pytest.mark.slow
def test_round_trip_of_held_out_mock_galaxies() -> None:
    """What the shipped codec achieves today (docs/codec.md), guarded against regressions."""
    report = _small_sample_report()
    for band, figures in report["bands"].items():
        assert figures["rms_crop_sigma"] <= BAR["rms_crop"], band  # the bar: met
        assert figures["rms_galaxy_sigma"] <= GALAXY_RMS_NOW, band
        assert figures["median_rms_galaxy_sigma_per_object"] <= MEDIAN_GALAXY_RMS_NOW, band
    assert report["codes_used"] > 100


@pytest.mark.slow
def test_round_trip_of_galaxies_from_a_generator_it_never_trained_on() -> None:
    """Spergel profiles, nuclei, Gaussian / Moffat-2 PSFs (astropt.codec_training.crosscheck)."""
    report = _small_sample_report("crosscheck")
    for band, figures in report["bands"].items():
        assert figures["rms_crop_sigma"] <= BAR["rms_crop"], band
        assert figures["rms_galaxy_sigma"] <= CROSSCHECK_GALAXY_RMS_NOW, band


@pytest.mark.slow
@pytest.mark.xfail(
    reason="issue #3's bar on galaxy pixels and bright-galaxy flux is not met yet "
    "by the shipped codec (see docs/codec.md, Limits)",
    strict=True,
)
def test_round_trip_meets_the_full_bar() -> None:
    report = _small_sample_report()
    for band, figures in report["bands"].items():
        assert figures["rms_galaxy_sigma"] <= BAR["rms_galaxy"], band
        if figures["n_bright"]:
            assert figures["flux_error_bright"] <= BAR["flux_error"], band


def test_reconstruction_is_not_trivial() -> None:
    """A collapsed codec decodes every galaxy to the same blob; this one follows the input."""
    handle = load_codec("shipped")
    galaxies = [simulate_galaxy(EVAL_SEED, i) for i in range(4)]
    flux = np.stack([g["flux"] for g in galaxies])
    recon = handle.decode(handle.encode(flux)).numpy()
    crop = slice(32, 128)
    truth = np.stack([g["truth"][:, crop, crop] for g in galaxies])
    for band in range(4):
        corr = np.corrcoef(recon[:, band].ravel(), truth[:, band].ravel())[0, 1]
        assert corr > 0.9, band
