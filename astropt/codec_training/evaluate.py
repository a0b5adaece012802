"""Evaluating an image codec against noise-free truth on held-out mock galaxies.

All errors are in units of each band's injected noise sigma. For every band:

- ``rms_crop``: RMS of decode(encode(noisy)) - truth over the 96x96 crop, pooled over
  all galaxies (every crop has the same number of pixels, so this is the quadratic
  mean of the per-galaxy values);
- ``rms_galaxy``: the same over the galaxy's pixels only (truth > 1 sigma), pooled
  over all such pixels of all galaxies;
- ``flux_error``: median |sum(recon) - sum(truth)| / sum(truth) in the crop, over
  galaxies whose crop flux is detected at S/N > 50 in that band;
- ``rms_by_brightness``: the galaxy-pixel RMS split by the truth's brightness (1-3, 3-10,
  10-30, 30-100 and >100 sigma), which shows where the error comes from;
- ``codes``: distinct codes used over the whole evaluation set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from astropt.constants import DEFAULT_BANDS
from astropt.images import centre_crop

GALAXY_THRESHOLD_SIGMA = 1.0
BRIGHT_SNR = 50.0
BRIGHTNESS_EDGES = (1.0, 3.0, 10.0, 30.0, 100.0, np.inf)  # truth / sigma
BRIGHTNESS_BINS = tuple(zip(BRIGHTNESS_EDGES[:-1], BRIGHTNESS_EDGES[1:], strict=True))
BAR = {"rms_crop": 1.0, "rms_galaxy": 1.0, "flux_error": 0.02}
EVAL_SEED = 2026  # held out: the trainer validates on mock seed 777 and trains on its own mix


def residual_stats(
    recon: np.ndarray, truth: np.ndarray, sigma: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-band error figures; ``recon``/``truth`` are ``[N, bands, 96, 96]``, ``sigma`` ``[N, bands]``."""
    recon, truth = np.asarray(recon, np.float64), np.asarray(truth, np.float64)
    sig = np.asarray(sigma, np.float64)[:, :, None, None]
    scaled = (recon - truth) / sig
    galaxy = truth > GALAXY_THRESHOLD_SIGMA * sig
    sq = scaled**2
    rms_crop = np.sqrt(sq.mean(axis=(0, 2, 3)))
    n_gal = galaxy.sum(axis=(0, 2, 3))
    rms_galaxy = np.sqrt(np.where(galaxy, sq, 0).sum(axis=(0, 2, 3)) / np.maximum(n_gal, 1))
    rms_galaxy[n_gal == 0] = np.nan

    level = truth / sig
    by_brightness = np.full((len(BRIGHTNESS_BINS), truth.shape[1]), np.nan)
    for i, (lo, hi) in enumerate(BRIGHTNESS_BINS):
        in_bin = (level > lo) & (level <= hi)
        count = in_bin.sum(axis=(0, 2, 3))
        by_brightness[i] = np.sqrt(
            np.where(in_bin, sq, 0).sum(axis=(0, 2, 3)) / np.maximum(count, 1)
        )
        by_brightness[i, count == 0] = np.nan

    flux_true, flux_rec = truth.sum(axis=(2, 3)), recon.sum(axis=(2, 3))
    snr = flux_true / (sig[:, :, 0, 0] * truth.shape[-1])  # sqrt(96*96) = 96 pixels of noise
    rel = np.abs(flux_rec - flux_true) / np.maximum(np.abs(flux_true), 1e-12)
    flux_error = np.array(
        [
            np.median(rel[snr[:, b] > BRIGHT_SNR, b]) if (snr[:, b] > BRIGHT_SNR).any() else np.nan
            for b in range(truth.shape[1])
        ]
    )
    return {
        "rms_crop": rms_crop,
        "rms_galaxy": rms_galaxy,
        "flux_error": flux_error,
        "n_bright": (snr > BRIGHT_SNR).sum(axis=0),
        "rms_by_brightness": by_brightness,
        "rms_galaxy_per_object": np.sqrt(
            np.where(galaxy, sq, 0).sum(axis=(2, 3)) / np.maximum(galaxy.sum(axis=(2, 3)), 1)
        ),
    }


GENERATORS = ("mock", "crosscheck")


def _simulator(generator: str):
    if generator == "mock":
        from astropt.data.mock import simulate_galaxy

        return simulate_galaxy
    if generator == "crosscheck":
        from astropt.codec_training.crosscheck import simulate_crosscheck

        return simulate_crosscheck
    raise ValueError(f"unknown generator {generator!r}: use one of {', '.join(GENERATORS)}")


def _mock_batches(n: int, seed: int, batch: int = 16, generator: str = "mock"):
    simulate = _simulator(generator)
    for start in range(0, n, batch):
        gals = [simulate(seed, i) for i in range(start, min(n, start + batch))]
        yield (
            np.stack([g["flux"] for g in gals]),
            np.stack([g["truth"] for g in gals]),
            np.stack([g["noise_sigma"] for g in gals]),
        )


def reconstruct(handle: Any, flux: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, decode(encode(flux))) through the codec's public encode/decode."""
    tokens = handle.encode(flux)
    return tokens.numpy(), handle.decode(tokens).numpy()


def evaluate_codec(
    spec: str = "shipped",
    n: int = 200,
    seed: int = EVAL_SEED,
    threads: int = 1,
    json_path: str | Path | None = None,
    generator: str = "mock",
) -> dict[str, Any]:
    """Figures of one codec on ``n`` held-out galaxies of ``generator`` (see the module docstring)."""
    import time

    from astropt.codec import load_codec
    from astropt.torch_policy import set_threads

    set_threads(threads)
    handle = load_codec(spec)
    started = time.perf_counter()
    recons, truths, sigmas, codes = [], [], [], set()
    for flux, truth, sigma in _mock_batches(n, seed, generator=generator):
        tokens, recon = reconstruct(handle, flux)
        codes.update(np.unique(tokens).tolist())
        recons.append(recon)
        truths.append(centre_crop(truth))
        sigmas.append(sigma)
    stats = residual_stats(np.concatenate(recons), np.concatenate(truths), np.concatenate(sigmas))
    bands: dict[str, dict[str, Any]] = {}
    for b, band in enumerate(DEFAULT_BANDS):
        bands[band] = {
            "rms_crop_sigma": float(stats["rms_crop"][b]),
            "rms_galaxy_sigma": float(stats["rms_galaxy"][b]),
            "median_rms_galaxy_sigma_per_object": float(
                np.median(stats["rms_galaxy_per_object"][:, b])
            ),
            "flux_error_bright": float(stats["flux_error"][b]),
            "n_bright": int(stats["n_bright"][b]),
            "rms_by_brightness_sigma": {
                _bin_name(lo, hi): _finite_or_none(stats["rms_by_brightness"][i, b])
                for i, (lo, hi) in enumerate(BRIGHTNESS_BINS)
            },
        }
    passes = all(
        v["rms_crop_sigma"] <= BAR["rms_crop"]
        and v["rms_galaxy_sigma"] <= BAR["rms_galaxy"]
        and (np.isnan(v["flux_error_bright"]) or v["flux_error_bright"] <= BAR["flux_error"])
        for v in bands.values()
    )
    report = {
        "codec": handle.info.to_dict(),
        "n_galaxies": n,
        "generator": generator,
        "mock_seed": seed,
        "bands": bands,
        "codes_used": len(codes),
        "bar": BAR,
        "passes_bar": bool(passes),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _bin_name(lo: float, hi: float) -> str:
    return f">{lo:g}" if np.isinf(hi) else f"{lo:g}-{hi:g}"


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None  # JSON has no NaN


def format_table(report: dict[str, Any]) -> str:
    info = report["codec"]
    lines = [
        f"codec {info['spec']} (fingerprint {info['fingerprint']}), {report['n_galaxies']} "
        f"{report.get('generator', 'mock')} galaxies of seed {report['mock_seed']}",
        f"{'band':<7}{'RMS crop':>10}{'RMS galaxy':>12}{'flux err':>10}{'n(S/N>50)':>11}",
    ]
    for band, v in report["bands"].items():
        lines.append(
            f"{band:<7}{v['rms_crop_sigma']:>9.3f}s{v['rms_galaxy_sigma']:>11.3f}s"
            f"{100 * v['flux_error_bright']:>9.2f}%{v['n_bright']:>11d}"
        )
    by_level = [v.get("rms_by_brightness_sigma") for v in report["bands"].values()]
    if all(by_level):
        lines.append("RMS on galaxy pixels by truth brightness [sigma]:")
        lines.append(f"  {'truth':<14}" + "".join(f"{band:>8}" for band in report["bands"]))
        for name in by_level[0]:
            cells = "".join(f"{_fmt(level[name]):>8}" for level in by_level)
            lines.append(f"  {name + ' sigma':<14}{cells}")
    bar = report["bar"]
    lines.append(f"distinct codes used: {report['codes_used']} of 10000")
    lines.append(
        f"bar (every band): RMS crop <= {bar['rms_crop']} sigma, RMS galaxy <= {bar['rms_galaxy']} "
        f"sigma, flux error <= {100 * bar['flux_error']:.0f}%: "
        + ("PASS" if report["passes_bar"] else "FAIL")
    )
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def write_grid(
    spec: str,
    png: str | Path,
    seed: int = EVAL_SEED,
    rows: int = 6,
    pool: int = 60,
    generator: str = "mock",
) -> Path:
    """Rows of galaxies spanning the brightness range: input | reconstruction | truth | residual."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from astropt.codec import load_codec
    from astropt.plotting import display_scale, lupton_rgb

    handle = load_codec(spec)
    flux, truth, sigma = (
        np.concatenate(a) for a in zip(*_mock_batches(pool, seed, generator=generator), strict=True)
    )
    order = np.argsort(truth[:, 1].sum(axis=(1, 2)))
    picks = order[np.linspace(0, len(order) - 1, rows).round().astype(int)][::-1]
    _, recon = reconstruct(handle, flux[picks])
    fig, axes = plt.subplots(rows, 4, figsize=(7.6, 1.9 * rows + 0.5), squeeze=False)
    fig.subplots_adjust(
        left=0.01,
        right=0.88,
        top=1 - 0.5 / (1.9 * rows + 0.5),
        bottom=0.01,
        wspace=0.04,
        hspace=0.04,
    )
    titles = ("input (noisy)", "reconstruction", "truth", "residual r [sigma]")
    for row, idx in enumerate(picks):
        s_r = float(sigma[idx, 1])
        crop_in, crop_truth = centre_crop(flux[idx]), centre_crop(truth[idx])
        scale = display_scale(crop_in, noise_sigma=sigma[idx])  # astropt.plotting's one renderer
        panels = (
            lupton_rgb(crop_in, scale),
            lupton_rgb(recon[row], scale),
            lupton_rgb(crop_truth, scale),
        )
        for col, img in enumerate(panels):
            axes[row, col].imshow(img, origin="lower")
        resid = (recon[row, 1] - crop_truth[1]) / s_r
        im = axes[row, 3].imshow(resid, origin="lower", cmap="RdBu_r", vmin=-3, vmax=3)
        for col in range(4):
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
            if row == 0:
                axes[row, col].set_title(titles[col], fontsize=9)
    fig.colorbar(
        im, cax=fig.add_axes((0.9, 0.25, 0.02, 0.5)), label="(recon - truth) / sigma, r band"
    )
    fig.suptitle(
        f"codec {handle.info.spec} ({handle.info.fingerprint}) on held-out {generator} galaxies",
        fontsize=9,
    )
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return Path(png)
