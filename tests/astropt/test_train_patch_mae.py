"""Training patch-token and MAE models through the same loop: falling loss, exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from astropt.checkpoints import load_checkpoint
from astropt.training import train
from tests.astropt.test_train import StopAt, read_train_losses, tiny_config

pytestmark = pytest.mark.slow  # trains real models (minutes on 2 cores)

KINDS = {
    "patch-aim": {"tokeniser": "patch", "patch_encoder": "aim"},
    "patch-affine-spiral": {
        "tokeniser": "patch",
        "patch_encoder": "affine",
        "patch_order": "spiral",
    },
    "patch-mae": {
        "tokeniser": "patch",
        "objective": "mae",
        "attn_type": "full",
        "mae_mask_ratio": 0.5,
    },
    "aion-mae": {
        "tokeniser": "aion",
        "objective": "mae",
        "attn_type": "full",
        "mae_mask_ratio": 0.5,
    },
}


def config_for(tmp_path: Path, kind: str, **overrides):
    overrides = {"max_iters": 40, "eval_interval": 20, "batch_size": 4} | overrides
    cfg = tiny_config(tmp_path, **overrides)
    cfg = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"learning_rate": 1e-2})})
    model = cfg.model.model_dump() | {"dropout": 0.0} | KINDS[kind]
    return cfg.model_copy(update={"model": type(cfg.model).model_validate(model)})


@pytest.mark.parametrize("kind", list(KINDS))
def test_trains_with_falling_loss_and_resumes_exactly(tmp_path, kind):
    full = config_for(tmp_path / "a", kind)
    result = train(full)
    losses = read_train_losses(Path(result.out_dir))
    first = sum(losses[k] for k in (1, 2, 3)) / 3
    last = sum(losses[k] for k in range(34, 41)) / 7
    assert last < 0.97 * first, losses
    model, meta = load_checkpoint(Path(result.out_dir) / "checkpoints" / "last")
    assert model.config.objective == KINDS[kind].get("objective", "ar")
    assert (meta["codec"] is None) == (KINDS[kind]["tokeniser"] == "patch")
    assert list((Path(result.out_dir) / "val_images").glob("*.png"))

    part = config_for(tmp_path / "b", kind)
    train(part, [StopAt(17)])
    resumed = train(part)
    again = read_train_losses(Path(resumed.out_dir))
    for step in (19, 30, 40):
        assert again[step] == pytest.approx(losses[step], rel=1e-5, abs=1e-6)
    a = load_checkpoint(Path(result.out_dir) / "checkpoints" / "last")[0].state_dict()
    b = load_checkpoint(Path(resumed.out_dir) / "checkpoints" / "last")[0].state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_config_rejects_bad_combinations(tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="attn_type"):
        config_for(tmp_path, "patch-mae").model.model_validate({"objective": "mae"})
    with pytest.raises(ValidationError, match="patch_size"):
        config_for(tmp_path, "patch-aim").model.model_validate(
            {"tokeniser": "patch", "patch_size": 10}
        )
