"""Fine-tune (lora, full, head) vs a ridge linear probe vs a constant, on the GalSim mock.

    OMP_NUM_THREADS=1 python benchmarks/bench_finetune.py [--out runs/bench-finetune] [--pretrain-iters 150]

1. Pretrains a small AstroPT (2 layers, 64 wide, shipped codec) on mock seed 0 (or uses
   ``--init`` / the shipped model when given).
2. Fine-tunes it on galaxies it never saw (mock seed 1): regression of ``mag_r``, ``g_r``,
   ``disk_hlr_arcsec`` and ``bulge_fraction`` in each mode, and classification of
   ``bulge_dominated``; every run also fits the ridge probe on the frozen model's embeddings
   and the constant predictor, on the same object-level split.
3. Prints a Markdown table of test-split R^2 (accuracy for the class label) and writes
   ``results.json``. Not a test: numbers move a little with the machine's float arithmetic.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

REGRESSION = ["mag_r", "g_r", "disk_hlr_arcsec", "bulge_fraction"]
CLASSIFICATION = ["bulge_dominated"]
MODES = ["lora", "full", "head"]


def pretrain(out: Path, iters: int) -> Path:
    from astropt.config import TrainConfig
    from astropt.training import train

    config = TrainConfig.model_validate(
        {
            "codec": "shipped",
            "model": {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 576},
            "data": {"source": "mock", "n_mock": 512, "mock_seed": 0, "path": str(out / "mock-s0")},
            "batch_size": 8,
            "max_iters": iters,
            "eval_interval": max(50, iters // 4),
            "eval_iters": 4,
            "log_interval": 25,
            "n_val_images": 0,
            "device": "cpu",
            "optim": {"learning_rate": 3e-3, "warmup_iters": 20},
            "out_dir": str(out / "pretrain"),
        }
    )
    result = train(config, resume=True)
    print(f"pretrained {iters} iterations: best val loss {result.best_val_loss:.3f}")
    return out / "pretrain" / "checkpoints" / "best"


def finetune_run(
    init: Path, out: Path, task: str, labels: list[str], mode: str, steps: int
) -> dict[str, Any]:
    from astropt.finetune import FinetuneConfig, finetune

    config = FinetuneConfig.model_validate(
        {
            "init": str(init),
            "labels": labels,
            "task": task,
            "mode": mode,
            "steps": steps,
            "lr": 3e-3,
            "batch_size": 16,
            "eval_interval": 25,
            "device": "cpu",
            "seed": 0,
            "lora": {"r": 8, "alpha": 16},
            "out_dir": str(out / f"{task}-{mode}"),
            "data": {"source": "mock", "n_mock": 400, "mock_seed": 1, "path": str(out / "mock-s1")},
        }
    )
    started = time.perf_counter()
    metrics = finetune(config).metrics
    assert metrics is not None
    metrics["seconds"] = time.perf_counter() - started
    return metrics


def cell(score: dict[str, float]) -> str:
    return f"{score['r2']:.3f}" if "r2" in score else f"{score['accuracy']:.3f}"


def table(results: dict[str, dict[str, Any]]) -> str:
    first = next(iter(results.values()))
    header = [
        "label (test: R², accuracy for classes)",
        *[f"fine-tune {m}" for m in MODES],
        "ridge probe",
        "constant",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task, labels in (("regression", REGRESSION), ("classification", CLASSIFICATION)):
        for label in labels:
            row = [label] + [cell(results[f"{task}-{m}"]["finetune"]["test"][label]) for m in MODES]
            base = results[f"{task}-lora"]
            row += [cell(base["probe"]["test"][label]), cell(base["constant"]["test"][label])]
            lines.append("| " + " | ".join(row) + " |")
    n = first["n"]
    lines.append(
        f"\n{n['train']} train / {n['val']} val / {n['test']} test galaxies (mock seed 1, never "
        "seen in pretraining); trainable parameters: "
        + ", ".join(f"{m} {results[f'regression-{m}']['trainable_params']:,}" for m in MODES)
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/bench-finetune")
    parser.add_argument("--init", help="a checkpoint to fine-tune instead of pretraining one")
    parser.add_argument("--pretrain-iters", type=int, default=150)
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    out = Path(args.out)
    started = time.perf_counter()
    init = Path(args.init) if args.init else pretrain(out, args.pretrain_iters)
    results = {}
    for task, labels in (("regression", REGRESSION), ("classification", CLASSIFICATION)):
        for mode in MODES:
            results[f"{task}-{mode}"] = finetune_run(init, out, task, labels, mode, args.steps)
            print(f"{task} {mode}: {results[f'{task}-{mode}']['seconds']:.0f} s")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
