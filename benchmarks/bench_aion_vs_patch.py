"""AION tokens vs flux patches on the same mock, model shape and budget (issue #16's comparison).

    PYTHONPATH=. python benchmarks/bench_aion_vs_patch.py --steps 300 --threads 1 \\
        --work bench-aion-vs-patch --json bench-aion-vs-patch/result.json

Validation losses are not comparable (cross-entropy over 10,000 codes vs a Huber loss on
normalised patches), so this compares what is:

* **reconstruction error in noise units**: each held-out galaxy's teacher-forced prediction
  (every token/patch predicted from the true ones before it) against the observed pixels,
  ``chi_obs = rms((pred - observed) / sigma)`` (1.0 = as close as the noise allows), and
  against the noise-free mock truth, ``chi_truth = rms((pred - truth) / sigma)`` (0 = perfect).
  Both over the 96x96 crop and over its central 32x32 (where the galaxy is). For AION the
  codec's own round trip is the floor the model cannot beat. A patch prediction is mapped
  back to flux with the target patch's own mean and standard deviation (as upstream displays
  it), information the AION model never gets; ``stats_only`` is the error of that mapping
  alone (every patch predicted as its own mean), the figure a patch model must beat.
* **linear-probe R^2** of mean-pooled last-layer embeddings (5-fold standardised ridge) on the
  mock truth labels, for the trained model and a same-shape random-init model.

Both models train on mock seed 0; the evaluation galaxies are mock seed 777 (never seen).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astropt.config import TrainConfig
from astropt.constants import DEFAULT_BANDS
from astropt.data.mock import nanomaggies_to_mag, simulate
from astropt.images import Cube, centre_crop
from astropt.inference.cache import ModelCache
from astropt.inference.patch_pipeline import embed_patches, reconstruct_patches
from astropt.inference.pipeline import ReconstructOptions, reconstruct
from astropt.model import GPT, GPTConfig
from astropt.science.embedding import EmbedOptions, embed_tokens
from astropt.science.probe import ridge_cv
from astropt.torch_policy import set_threads
from astropt.training import train

LABELS = ("mag_r", "g_r", "disk_hlr_arcsec", "disk_q", "bulge_fraction")
TOKENISERS = {
    "aion": {"tokeniser": "aion"},
    "patch-aim": {"tokeniser": "patch", "vocab_size": 0, "patch_size": 16, "patch_encoder": "aim"},
}


def train_run(name: str, args: argparse.Namespace, work: Path) -> tuple[Path, float]:
    model = {
        "n_layer": args.layers,
        "n_head": 4,
        "n_embd": args.width,
        "block_size": 576,
        **TOKENISERS[name],
    }
    config = TrainConfig.model_validate(
        {
            "out_dir": str(work / name),
            "codec": "shipped",
            "model": model,
            "data": {
                "source": "mock",
                "n_mock": args.n_mock,
                "mock_seed": 0,
                "path": str(work / "mock"),
            },
            "batch_size": 8,
            "max_iters": args.steps,
            "eval_interval": max(1, args.steps // 4),
            "eval_iters": 2,
            "log_interval": 10,
            "n_val_images": 0,
            "device": "cpu",
            "dtype": "float32",
            "compile": "off",
            "seed": 0,
            "optim": {"learning_rate": 1e-3, "warmup_iters": 20},
        }
    )
    started = time.perf_counter()
    result = train(config)
    if result.status != "completed":
        raise SystemExit(f"{name}: training {result.status}: {result.reason}")
    return Path(config.out_dir) / "checkpoints" / "best", time.perf_counter() - started


def chi(pred: np.ndarray, ref: np.ndarray, sigma: np.ndarray, half: int | None = None) -> float:
    diff = (pred.astype(np.float64) - ref) / sigma[:, None, None]
    if half is not None:
        c = diff.shape[-1] // 2
        diff = diff[:, c - half : c + half, c - half : c + half]
    return float(np.sqrt(np.mean(diff**2)))


def patch_means(crop: np.ndarray, size: int = 16) -> np.ndarray:
    """Every ``size`` x ``size`` patch replaced by the mean of its values over all bands."""
    c, h, w = crop.shape
    blocks = crop.reshape(c, h // size, size, w // size, size).mean(axis=(0, 2, 4))
    return np.broadcast_to(np.kron(blocks, np.ones((size, size)))[None], crop.shape)


def labels_of(galaxies: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    p = [g["params"] for g in galaxies]
    mag_g = nanomaggies_to_mag(np.array([q["flux_g"] for q in p]))
    mag_r = nanomaggies_to_mag(np.array([q["flux_r"] for q in p]))
    return {
        "mag_r": np.array([q["mag_r"] for q in p]),
        "g_r": mag_g - mag_r,
        "disk_hlr_arcsec": np.log10([q["disk_hlr_arcsec"] for q in p]),
        "disk_q": np.array([q["disk_q"] for q in p]),
        "bulge_fraction": np.array([q["bulge_fraction"] for q in p]),
    }


def evaluate(checkpoint: Path, galaxies: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    loaded = ModelCache(torch.device("cpu"), 1, 2**62).get(checkpoint)
    random_model = GPT(GPTConfig.from_dict(loaded.meta["model_args"])).eval()
    options = ReconstructOptions(mode="predict")
    chis: dict[str, list[float]] = {
        k: []
        for k in (
            "obs",
            "truth",
            "obs_centre",
            "truth_centre",
            "codec_obs",
            "codec_truth",
            "stats_only_obs",
            "stats_only_truth",
        )
    }
    embeddings: dict[str, list[np.ndarray]] = {"trained": [], "random-init": []}
    for start in range(0, len(galaxies), batch):
        group = galaxies[start : start + batch]
        cubes = [Cube(g["flux"], DEFAULT_BANDS) for g in group]
        with torch.inference_mode():
            if loaded.codec is None:
                recs = reconstruct_patches(cubes, loaded.model, loaded.meta, options)
                for key, model in (("trained", loaded.model), ("random-init", random_model)):
                    embeddings[key] += [
                        e["mean"] for e in embed_patches(cubes, model, loaded.meta, "mean")
                    ]
            else:
                recs = reconstruct(
                    cubes, loaded.codec, loaded.model, options, loaded.codec_info, torch.float32
                )
                tokens = torch.as_tensor(np.stack([r.tokens for r in recs]))
                for key, model in (("trained", loaded.model), ("random-init", random_model)):
                    embeddings[key].append(embed_tokens(model, tokens, EmbedOptions(pool="mean")))
        for g, r in zip(group, recs, strict=True):
            obs, truth, sigma = centre_crop(g["flux"]), centre_crop(g["truth"]), g["noise_sigma"]
            chis["obs"].append(chi(r.model, obs, sigma))
            chis["truth"].append(chi(r.model, truth, sigma))
            chis["obs_centre"].append(chi(r.model, obs, sigma, 16))
            chis["truth_centre"].append(chi(r.model, truth, sigma, 16))
            if r.codec is not None:
                chis["codec_obs"].append(chi(r.codec, obs, sigma))
                chis["codec_truth"].append(chi(r.codec, truth, sigma))
            else:
                floor = patch_means(obs.astype(np.float64))
                chis["stats_only_obs"].append(chi(floor, obs, sigma))
                chis["stats_only_truth"].append(chi(floor, truth, sigma))
    labels = labels_of(galaxies)
    probes = {}
    for key, parts in embeddings.items():
        x = np.concatenate([np.atleast_2d(p) for p in parts])
        probes[key] = {
            label: round(ridge_cv(x, y, alpha=100.0).r2_mean, 3) for label, y in labels.items()
        }
    return {
        "median_chi": {k: round(float(np.median(v)), 3) for k, v in chis.items() if v},
        "probe_r2": probes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--n-mock", type=int, default=1024)
    parser.add_argument("--eval-n", type=int, default=300)
    parser.add_argument("--eval-seed", type=int, default=777)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default="bench-aion-vs-patch")
    parser.add_argument("--json")
    args = parser.parse_args()
    set_threads(args.threads)
    work = Path(args.work)
    galaxies = list(simulate(args.eval_n, seed=args.eval_seed))
    out: dict[str, Any] = {"settings": vars(args)}
    for name in TOKENISERS:
        checkpoint, seconds = train_run(name, args, work)
        out[name] = {"train_seconds": round(seconds, 1), **evaluate(checkpoint, galaxies, 16)}
        print(name, json.dumps(out[name]), flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
