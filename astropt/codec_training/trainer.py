"""Training the shipped AION-architecture image codec on a broad GalSim mix.

A denoising autoencoder: input = noise-free truth + fresh Gaussian sky noise (new noise
at every draw), target = the truth. The loss lives in the codec's own range-compressed
space (AION's encode preprocessing: crop, per-band clamp, survey rescale, arcsinh) and
each pixel is weighted by the inverse variance of its noise *in that space*, so the
loss is a chi-square in units of the injected sigma: exactly what `codec evaluate`
measures. Quantisation uses AION's FSQ with its straight-through estimator.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from astropt.codec import (
    AION_RANGE_COMPRESSION,
    SHIPPED_DIR,
    WEIGHTS_NAME,
    build_codec,
    fingerprint,
    save_codec,
)
from astropt.codec_training.objective import (
    flux_loss,
    forward_compressed,
    fsq_codes,
    latent_range_penalty,
    respread_latents,
    spread_init,
    weighted_loss,
)
from astropt.constants import DEFAULT_BANDS
from astropt.run_dir import RunDir, staged_directory
from astropt.torch_policy import choose_device, prepare_device, set_threads

if TYPE_CHECKING:  # AION ships no type information: the name is Any to the checker
    from aion.codecs import ImageCodec

TRAINING_CARD = "codecs/image/training.json"


@dataclass
class CodecTrainConfig:
    out: str
    steps: int = 1600
    batch_size: int = 16
    lr: float = 1.5e-3
    warmup: int = 100
    min_lr_fraction: float = 0.05
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    pool_size: int = 2000
    val_size: int = 32
    seed: int = 0
    hidden_dims: int = 64
    num_consecutive: int = 2
    range_compression: float = AION_RANGE_COMPRESSION  # AION's arcsinh scale, in nanomaggies
    relative_floor: float = 0.003  # accepted relative error on pixels brighter than ~1/floor sigma
    huber_delta: float = 3.0  # residuals beyond this many sigma count linearly, not squared
    latent_penalty: float = 1.0  # relative to the reconstruction loss (see train_codec)
    flux_weight: float = 0.0  # weight of the crop-flux chi^2 (see flux_loss)
    ema_decay: float = 0.0  # > 0: validate and export an exponential moving average of the weights
    flux_floor: float = 0.005  # accepted relative error of the crop flux of very bright scenes
    log_every: int = 25
    eval_every: int = 200
    checkpoint_every: int = 100
    max_minutes: float | None = None
    threads: int = 1  # on shared CPUs one thread per process is much faster than two
    device: str = "auto"  # "auto": CUDA when available, else CPU
    init_from: str | None = None  # codec spec to start from (fine-tuning) instead of a fresh init
    ship: bool = False

    def codec_args(self) -> dict[str, Any]:
        # Written to config.json only when it differs from AION's default, so a codec trained
        # with the default keeps exactly AION's config keys.
        scale = (
            {}
            if self.range_compression == AION_RANGE_COMPRESSION
            else {"range_compression_factor": self.range_compression}
        )
        return {
            "quantizer_levels": [8, 5, 5, 5, 5],
            "hidden_dims": self.hidden_dims,
            "multisurvey_projection_dims": 54,
            "n_compressions": 2,
            "num_consecutive": self.num_consecutive,
            "embedding_dim": 5,
            **scale,
        }


def _architecture(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "range_compression_factor"}


def warm_start(
    codec: torch.nn.Module, spec: str, noisy: torch.Tensor, bands: list[str]
) -> dict[str, Any]:
    """Copy the weights of codec ``spec`` into ``codec``; returns its card.

    Same architecture: a plain copy. A wider ``hidden_dims`` (everything else equal): the
    trained codec is grown into the wider one (:mod:`astropt.codec_training.grow`), its latents
    refitted on ``noisy``.
    """
    from astropt.codec import codec_config, load_codec, resolve
    from astropt.codec_training.grow import refit_pre_quant, widen_codec

    source, target = resolve(spec)
    handle = load_codec(spec)
    # The range compression is preprocessing, not weights: a codec can be fine-tuned to another.
    theirs, ours = (_architecture(codec_config(c)) for c in (handle.codec, codec))
    grown = None
    if theirs == ours:
        codec.load_state_dict(handle.codec.state_dict())
    elif {**theirs, "hidden_dims": ours["hidden_dims"]} == ours and ours["hidden_dims"] > theirs[
        "hidden_dims"
    ]:
        parent = copy.deepcopy(handle.codec).to(
            noisy.device
        )  # the loaded handle is cached: leave it be
        latent = widen_codec(parent, codec)
        fit = refit_pre_quant(parent, codec, latent, noisy, bands)
        grown = {"from_hidden_dims": theirs["hidden_dims"], **fit}
    else:
        raise ValueError(
            f"--init-from {spec}: its architecture {theirs} differs from this run's {ours}; only a "
            f"larger --hidden-dims can be grown from it (set --num-consecutive to match)"
        )
    card_path = (SHIPPED_DIR if source == "shipped" else Path(target)) / TRAINING_CARD
    before = json.loads(card_path.read_text()) if card_path.is_file() else {}
    seconds = before.get("total_train_seconds", before.get("train_seconds", 0.0))
    card = {
        "spec": spec,
        "fingerprint": handle.info.fingerprint,
        "total_train_seconds": seconds,
        "steps_done": before.get("steps_done"),
        "config": before.get("config"),
    }
    return {**card, "grown": grown} if grown else card


# -- data ----------------------------------------------------------------------------


def _dihedral(cube: np.ndarray, k: int, flip: bool) -> np.ndarray:
    out = np.rot90(cube, k, axes=(1, 2))
    return out[:, :, ::-1] if flip else out


def training_batch(
    pool: np.ndarray, sigmas: np.ndarray, n_train: int, cfg: CodecTrainConfig, step: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(noisy, truth, sigma) for ``step``: a pure function of (seed, step), so resuming is exact."""
    rng = np.random.default_rng([cfg.seed, step + 1, 0xBA7C])
    idx = rng.integers(0, n_train, size=cfg.batch_size)
    rots, flips = rng.integers(0, 4, size=cfg.batch_size), rng.integers(0, 2, size=cfg.batch_size)
    truth = np.stack(
        [_dihedral(pool[i], k, bool(f)) for i, k, f in zip(idx, rots, flips, strict=True)]
    )
    truth_t = torch.from_numpy(np.ascontiguousarray(truth, dtype=np.float32))
    sigma_t = torch.from_numpy(sigmas[idx].astype(np.float32))
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step + 1)
    noise = torch.randn(truth_t.shape, generator=gen) * sigma_t[:, :, None, None]
    return truth_t + noise, truth_t, sigma_t


def lr_at(cfg: CodecTrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    floor = cfg.lr * cfg.min_lr_fraction
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))


class WeightAverage:
    """Exponential moving average of a module's floating-point weights.

    Late in training the weights still jitter from batch to batch (a batch of 16 scenes
    can be dominated by one bright galaxy); the average of the last ~1/(1-decay) steps
    reconstructs better than any single step, so it is what gets validated and exported.
    """

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {
            k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()
        }

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        for name, value in module.state_dict().items():
            if name in self.shadow:
                self.shadow[name].lerp_(value, 1.0 - self.decay)

    @contextlib.contextmanager
    def applied(self, module: torch.nn.Module):
        """Temporarily put the averaged weights into ``module``."""
        backup = {k: v.detach().clone() for k, v in module.state_dict().items() if k in self.shadow}
        module.load_state_dict(self.shadow, strict=False)
        try:
            yield module
        finally:
            module.load_state_dict(backup, strict=False)


# -- checkpoints ---------------------------------------------------------------------


def _save_checkpoint(
    codec: torch.nn.Module,
    opt: torch.optim.Optimizer,
    out: Path,
    state: dict,
    average: WeightAverage | None = None,
) -> None:
    """model.safetensors (+ ema.safetensors) + optimizer.pt (tensors only) + state.json."""
    from safetensors.torch import save_file, save_model

    with staged_directory(RunDir(out).checkpoint("last")) as tmp:
        save_model(codec, str(tmp / "model.safetensors"))
        if average is not None:
            save_file(
                {k: v.contiguous() for k, v in average.shadow.items()}, str(tmp / "ema.safetensors")
            )
        torch.save(opt.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps(state, indent=2))


def _load_checkpoint(
    codec: torch.nn.Module,
    opt: torch.optim.Optimizer,
    out: Path,
    average: WeightAverage | None = None,
) -> dict | None:
    from safetensors.torch import load_file, load_model

    last = RunDir(out).checkpoint("last")
    if not (last / "state.json").is_file():
        return None
    load_model(codec, str(last / "model.safetensors"))
    if average is not None:
        ema_path = last / "ema.safetensors"
        stored = load_file(str(ema_path)) if ema_path.is_file() else codec.state_dict()
        average.shadow = {
            k: stored[k].detach().clone().to(v.device) for k, v in average.shadow.items()
        }
    opt.load_state_dict(torch.load(last / "optimizer.pt", weights_only=True, map_location="cpu"))
    return json.loads((last / "state.json").read_text())


def export_codec(codec: torch.nn.Module, target: Path, card: dict[str, Any]) -> Path:
    """AION layout + ``codecs/image/training.json`` (fingerprint and how it was made)."""
    save_codec(codec, target)
    card = {**card, "fingerprint": fingerprint(codec)}
    (target / TRAINING_CARD).write_text(json.dumps(card, indent=2) + "\n")
    return target


# -- validation ----------------------------------------------------------------------


def validation_set(
    pool: np.ndarray, sigmas: np.ndarray, n_train: int, n_val: int
) -> dict[str, tuple]:
    """Held-out pool galaxies and project-mock galaxies, each with one fixed noise draw."""
    from astropt.data.mock import simulate_galaxy

    gen = torch.Generator().manual_seed(4242)
    truth = torch.from_numpy(np.array(pool[n_train : n_train + n_val], dtype=np.float32))
    sigma = torch.from_numpy(sigmas[n_train : n_train + n_val].astype(np.float32))
    noisy = truth + torch.randn(truth.shape, generator=gen) * sigma[:, :, None, None]
    mocks = [simulate_galaxy(777, i) for i in range(n_val)]
    m_noisy = torch.from_numpy(np.stack([m["flux"] for m in mocks]))
    m_truth = torch.from_numpy(np.stack([m["truth"] for m in mocks]))
    m_sigma = torch.from_numpy(np.stack([m["noise_sigma"] for m in mocks]))
    return {"mix": (noisy, truth, sigma), "mock": (m_noisy, m_truth, m_sigma)}


@torch.no_grad()
def validate(codec: ImageCodec, sets: dict[str, tuple], bands: list[str]) -> dict[str, Any]:
    from astropt.codec_training.evaluate import residual_stats

    codec.eval()
    device = next(codec.parameters()).device
    metrics: dict[str, Any] = {}
    for name, (noisy, truth, sigma) in sets.items():
        pred_c, z = forward_compressed(codec, noisy.to(device), bands)
        recon = codec._reverse_range_compress(pred_c).cpu()
        stats = residual_stats(recon.numpy(), codec.center_crop(truth).numpy(), sigma.numpy())
        metrics[f"{name}_rms_crop"] = round(float(stats["rms_crop"].max()), 3)
        metrics[f"{name}_rms_gal"] = round(float(stats["rms_galaxy"].max()), 3)
        metrics[f"{name}_codes"] = int(torch.unique(fsq_codes(codec, z)).numel())
    codec.train()
    return metrics


# -- the loop ------------------------------------------------------------------------


def train_codec(cfg: CodecTrainConfig, progress: bool = True) -> Path:
    """Train (resuming from ``cfg.out/checkpoints/last`` when present); returns the export dir."""
    from tqdm.auto import tqdm

    from astropt.codec.layout import _with_config
    from astropt.codec_training.mix import build_pool

    out = Path(cfg.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    set_threads(cfg.threads)
    bands = list(DEFAULT_BANDS)
    pool, sigmas = build_pool(out / "pool", cfg.pool_size + cfg.val_size, cfg.seed, progress)
    val_sets = validation_set(pool, sigmas, cfg.pool_size, cfg.val_size)

    device = choose_device(cfg.device)
    prepare_device(device)
    torch.manual_seed(cfg.seed)
    codec = _with_config(build_codec(cfg.codec_args()), cfg.codec_args()).to(device)
    opt = torch.optim.AdamW(codec.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    average = WeightAverage(codec, cfg.ema_decay) if cfg.ema_decay else None
    state = _load_checkpoint(codec, opt, out, average) or {"step": 0, "seconds": 0.0}
    init_card = state.get("init")
    if state["step"]:
        print(
            f"resuming from step {state['step']} ({out / 'checkpoints' / 'last'})", file=sys.stderr
        )
    elif cfg.init_from:
        refit_batch = training_batch(pool, sigmas, cfg.pool_size, cfg, -1)[0].to(device)
        init_card = warm_start(codec, cfg.init_from, refit_batch, bands)
    else:
        spread_init(
            codec, training_batch(pool, sigmas, cfg.pool_size, cfg, -1)[0].to(device), bands
        )
    if average is not None and not state["step"]:
        average = WeightAverage(codec, cfg.ema_decay)  # starts from the initial weights
    exported = average.applied if average is not None else contextlib.nullcontext
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    log_path = out / "log.jsonl"

    codec.train()
    started, base_seconds = time.perf_counter(), float(state["seconds"])
    bar = tqdm(
        total=cfg.steps, initial=state["step"], desc="codec", unit="step", disable=not progress
    )
    step = state["step"]
    while step < cfg.steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step)
        noisy, truth, sigma = (
            t.to(device) for t in training_batch(pool, sigmas, cfg.pool_size, cfg, step)
        )
        pred_c, z = forward_compressed(codec, noisy, bands)
        recon_loss = weighted_loss(
            codec, pred_c, truth, sigma, bands, cfg.relative_floor, cfg.huber_delta
        )
        # The penalty is scaled by the (detached) reconstruction loss so it keeps its weight
        # while the chi^2 falls by orders of magnitude; without it a few early steps push
        # the pre-quant values into tanh saturation and the codebook collapses to one code.
        penalty = latent_range_penalty(z) * recon_loss.detach()
        loss = recon_loss + cfg.latent_penalty * penalty
        if cfg.flux_weight:
            loss = loss + cfg.flux_weight * flux_loss(codec, pred_c, truth, sigma, cfg.flux_floor)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(codec.parameters(), cfg.grad_clip)
        opt.step()
        if average is not None:
            average.update(codec)
        step += 1
        bar.update(1)
        elapsed = base_seconds + time.perf_counter() - started

        if step % cfg.log_every == 0 or step == cfg.steps:
            codes = int(torch.unique(fsq_codes(codec, z.detach())).numel())
            record = {
                "step": step,
                "loss": round(recon_loss.item(), 4),
                "lr": lr_at(cfg, step - 1),
                "batch_codes": codes,
                "seconds": round(elapsed, 1),
            }
            if step % cfg.eval_every == 0 or step == cfg.steps:
                with exported(codec):
                    record.update(validate(codec, val_sets, bands))
                if step < cfg.steps and (fixed := respread_latents(codec, z)):
                    record["respread_channels"] = fixed
            bar.set_postfix(loss=record["loss"], codes=codes)
            with log_path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")
        timed_out = cfg.max_minutes is not None and elapsed > cfg.max_minutes * 60
        if step % cfg.checkpoint_every == 0 or step == cfg.steps or timed_out:
            _save_checkpoint(
                codec,
                opt,
                out,
                {"step": step, "seconds": elapsed, "config": asdict(cfg), "init": init_card},
                average,
            )
        if timed_out:
            print(
                f"stopping at step {step}: --max-minutes {cfg.max_minutes} reached", file=sys.stderr
            )
            break
    bar.close()

    if average is not None:
        codec.load_state_dict(average.shadow, strict=False)
    card = {
        "trainer": "astropt codec train",
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("out", "ship")},
        "steps_done": step,
        "train_seconds": round(base_seconds + time.perf_counter() - started, 1),
        "threads": cfg.threads,
        "final_validation": validate(codec, val_sets, bands),
    }
    if init_card:
        card["initialised_from"] = init_card
        card["total_train_seconds"] = round(
            card["train_seconds"] + init_card["total_train_seconds"], 1
        )
    codec = codec.cpu().eval()
    target = export_codec(codec, out / "codec", card)
    if cfg.ship:
        export_codec(codec, SHIPPED_DIR, card)
        print(f"shipped codec written to {SHIPPED_DIR / WEIGHTS_NAME}", file=sys.stderr)
    return target
