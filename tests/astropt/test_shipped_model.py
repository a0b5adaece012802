"""The pretrained AstroPT shipped in the package: loads offline, within budget, accurate."""

from __future__ import annotations

import pytest

from astropt.checkpoints import load_model
from astropt.checkpoints.shipped import (
    HELD_OUT_SEED,
    SHIPPED_MODEL_DIR,
    SIZE_BUDGET_BYTES,
    held_out_tokens,
    load_shipped_model,
    shipped_model_fingerprint,
    shipped_model_info,
    teacher_forced_accuracy,
)

pytestmark = pytest.mark.skipif(
    not (SHIPPED_MODEL_DIR / "model.safetensors").is_file(),
    reason="this installation has no shipped model",
)


def test_loads_offline_within_budget_and_matches_its_record() -> None:
    model, meta = load_shipped_model()  # HF_HUB_OFFLINE=1 in tests: nothing is downloaded
    info = shipped_model_info()
    assert (
        meta["codec"]["spec"] == "shipped"
        and meta["codec"]["fingerprint"] == info["codec"]["fingerprint"]
    )
    assert shipped_model_fingerprint() == info["fingerprint"]
    assert sum(f.stat().st_size for f in SHIPPED_MODEL_DIR.iterdir()) <= SIZE_BUDGET_BYTES
    assert sum(p.numel() for p in model.parameters()) == info["n_params"]
    assert not model.training
    assert (SHIPPED_MODEL_DIR / "MODEL_CARD.md").is_file()
    assert load_model(SHIPPED_MODEL_DIR) is not None  # an ordinary checkpoint directory


def test_teacher_forced_accuracy_on_held_out_mock_galaxies() -> None:
    model, _ = load_shipped_model()
    tokens = held_out_tokens("shipped", n=16, seed=HELD_OUT_SEED)  # a seed training never used
    accuracy = teacher_forced_accuracy(model, tokens)
    assert accuracy >= 0.65
    assert accuracy == pytest.approx(
        shipped_model_info()["token_accuracy_teacher_forced"], abs=0.05
    )
