"""Put a trained checkpoint into the package as the shipped model, with its evaluation.

    python scripts/ship_model.py RUN_DIR [--minutes M]

Copies RUN_DIR/checkpoints/best into astropt/shipped_model/ (weights stored as float16 when
float32 would exceed the size budget), measures teacher-forced token accuracy on held-out mock
galaxies (a seed never trained on) and writes evaluation.json; MODEL_CARD.md quotes it.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from astropt.checkpoints.io import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint
from astropt.checkpoints.shipped import (
    EVALUATION_FILE,
    HELD_OUT_SEED,
    SHIPPED_MODEL_DIR,
    SIZE_BUDGET_BYTES,
    held_out_tokens,
    shipped_model_fingerprint,
    teacher_forced_predictions,
)


def galaxy_token_figures(
    predicted: torch.Tensor, targets: torch.Tensor, sky: int
) -> dict[str, float]:
    """Accuracy on the tokens that are not empty sky (the most frequent token, which predicting
    it everywhere already gets right), and how often the model predicts such a token."""
    galaxy = targets != sky
    return {
        "token_accuracy_on_galaxy_tokens": round(
            float((predicted == targets)[galaxy].sum() / max(int(galaxy.sum()), 1)), 4
        ),
        "galaxy_token_fraction": round(float(galaxy.float().mean()), 4),
        "predicted_galaxy_token_fraction": round(float((predicted != sky).float().mean()), 4),
    }


def draw_panel(path: Path, model: torch.nn.Module, meta: dict) -> None:
    """Original, codec, model and residual of held-out galaxy 0, as ``/reconstruct`` draws them."""
    import numpy as np

    from astropt.codec import load_codec
    from astropt.constants import DEFAULT_BANDS
    from astropt.data.mock import simulate_galaxy
    from astropt.images import Cube
    from astropt.inference.pipeline import reconstruct
    from astropt.inference.render import render_png

    flux = np.asarray(simulate_galaxy(HELD_OUT_SEED, 0)["flux"], dtype=np.float32)
    recon = reconstruct(
        [Cube(flux, DEFAULT_BANDS)], load_codec("shipped"), model, model_codec=meta.get("codec")
    )
    path.write_bytes(render_png(recon[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument(
        "--minutes", type=float, default=None, help="training wall time, for the card"
    )
    parser.add_argument("--n-eval", type=int, default=64)
    parser.add_argument(
        "--panel", type=Path, default=None, help="also draw a held-out galaxy's /reconstruct panel"
    )
    args = parser.parse_args()
    source = args.run_dir / "checkpoints" / "best"
    meta = json.loads((source / CONFIG_FILE).read_text())

    staging = SHIPPED_MODEL_DIR.with_name("shipped_model.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    state = load_file(str(source / WEIGHTS_FILE))
    dtype = "float32"
    if (source / WEIGHTS_FILE).stat().st_size > SIZE_BUDGET_BYTES:
        state = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in state.items()}
        dtype = "float16"
    save_file(state, str(staging / WEIGHTS_FILE), metadata={"format": meta["format"]})
    (staging / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")

    start = time.perf_counter()
    model, _ = load_checkpoint(staging)
    tokens = held_out_tokens("shipped", args.n_eval, HELD_OUT_SEED)
    predicted, next_tokens = teacher_forced_predictions(model, tokens)
    accuracy = float((predicted == next_tokens).float().mean())
    targets = tokens[:, 1:]
    sky = int(torch.mode(targets.flatten()).values)  # the empty-sky token
    baselines = {  # what predicting without looking at the galaxy already scores
        "most_frequent_token": round(float((targets == sky).float().mean()), 4),
        "copy_previous_token": round(float((targets == tokens[:, :-1]).float().mean()), 4),
    }
    galaxy = targets != sky
    copied = (targets == tokens[:, :-1]) & galaxy
    baselines["copy_previous_token_on_galaxy_tokens"] = round(float(copied.sum() / galaxy.sum()), 4)
    with open(args.run_dir / "loss.csv") as handle:
        rows = list(csv.DictReader(handle))
    val = [
        (int(r["step"]), float(r["val_loss"])) for r in rows if r.get("val_loss") not in (None, "")
    ]
    evaluation = {
        "token_accuracy_teacher_forced": round(accuracy, 4),
        **galaxy_token_figures(predicted, next_tokens, sky),
        "baselines": baselines,
        "held_out": {"source": "mock", "seed": HELD_OUT_SEED, "n_galaxies": args.n_eval},
        "trained_on": {
            "source": "mock",
            "mock_seed": meta.get("train_config", {}).get("data", {}).get("mock_seed", 0),
            "n_mock": meta.get("train_config", {}).get("data", {}).get("n_mock"),
        },
        "codec": meta.get("codec"),
        "step": meta.get("step"),
        "best_val_loss": meta.get("best_val_loss"),
        "val_loss_curve": val,
        "training_minutes": args.minutes,
        "weights_dtype": dtype,
        "weights_bytes": (staging / WEIGHTS_FILE).stat().st_size,
        "n_params": sum(p.numel() for p in model.parameters()),
        "model_args": meta["model_args"],
        "fingerprint": shipped_model_fingerprint(staging),
        "evaluation_seconds": round(time.perf_counter() - start, 1),
    }
    (staging / EVALUATION_FILE).write_text(json.dumps(evaluation, indent=2) + "\n")
    if args.panel is not None:
        draw_panel(args.panel, model, meta)
    card = SHIPPED_MODEL_DIR / "MODEL_CARD.md"
    if card.is_file():
        shutil.copy(card, staging / "MODEL_CARD.md")
    shutil.rmtree(SHIPPED_MODEL_DIR, ignore_errors=True)
    staging.rename(SHIPPED_MODEL_DIR)
    print(json.dumps({k: v for k, v in evaluation.items() if k != "val_loss_curve"}, indent=2))


if __name__ == "__main__":
    main()
