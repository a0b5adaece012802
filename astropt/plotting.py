"""Figures: loss curves and colour (Lupton RGB) galaxy panels."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from astropy.visualization import make_lupton_rgb  # noqa: E402

# Colour from g, r, z (blue, green, red) as Legacy Survey viewers do.
RGB_BANDS = (3, 1, 0)
LUPTON_Q = 8.0
# The display scale (see DisplayScale). astropy maps intensity I above the black point to
# asinh(I / softening) / (10 asinh(0.1 Q)) of full brightness (Q = 8: saturation at I = 761
# softenings). The softening is NOISE_SOFTENING times the sky noise of the intensity, so
# the sky (the black point) is black, a 1-sigma pixel lands at ~8% and a 3-sigma one at
# ~20%: faint galaxies on a dark sky, as in the Legacy Survey viewer; unless the bright end needs more room: then the brightest pixels (99.9th
# percentile) land at ~90% and do not saturate.
NOISE_SOFTENING = 1.5
BRIGHT_TO_SOFTENING = 365.0  # asinh(365) / (10 asinh(0.8)) = 0.90
MIN_SOFTENING = 1e-4  # nanomaggies; keeps blank images from dividing by ~0
MAD_TO_SIGMA = 1.4826  # Gaussian sigma from the median absolute deviation


@dataclass(frozen=True)
class DisplayScale:
    """How flux becomes colour: black point per displayed band and one asinh softening.

    ``minimum``: the sky level of z, r, g (red, green, blue), mapped to black.
    ``softening``: flux (nanomaggies, above the sky) where the asinh turns from linear to
    logarithmic; ``noise``: the sky noise of the displayed intensity; ``bright``: the bright
    end (99.9th percentile above the sky). Use one scale for panels that are to be compared.
    """

    minimum: tuple[float, float, float]
    softening: float
    noise: float
    bright: float


def sky_noise(image: np.ndarray) -> tuple[float, float]:
    """(sky level, sigma) of one band from its median and median absolute deviation:
    robust while the galaxy covers less than about a third of the pixels."""
    values = image[np.isfinite(image)]
    if values.size == 0:
        return 0.0, 0.0
    sky = float(np.median(values))
    return sky, MAD_TO_SIGMA * float(np.median(np.abs(values - sky)))


def display_scale(flux: np.ndarray, noise_sigma: Sequence[float] | None = None) -> DisplayScale:
    """The display scale for ``[4, H, W]`` flux: black at the sky, stretch from the noise
    (faint galaxies on a dark sky) and from the bright end (bright ones unsaturated).

    ``noise_sigma`` (per band, g r i z) overrides the noise estimated from the image.
    """
    flux = np.asarray(flux, dtype=np.float64)
    skies, sigmas = zip(*(sky_noise(flux[i]) for i in RGB_BANDS), strict=True)
    if noise_sigma is not None:
        sigmas = tuple(float(noise_sigma[i]) for i in RGB_BANDS)
    noise = float(np.sqrt(np.sum(np.square(sigmas)))) / len(RGB_BANDS)  # of the mean of 3 bands
    intensity = np.nan_to_num(
        np.mean([flux[i] - sky for i, sky in zip(RGB_BANDS, skies, strict=True)], axis=0)
    )
    bright = float(np.percentile(intensity, 99.9))
    softening = max(NOISE_SOFTENING * noise, bright / BRIGHT_TO_SOFTENING, MIN_SOFTENING)
    return DisplayScale(
        minimum=tuple(skies), softening=softening, noise=noise, bright=max(bright, 0.0)
    )


def lupton_rgb(flux: np.ndarray, scale: DisplayScale | None = None) -> np.ndarray:
    """``[4, H, W]`` g, r, i, z flux (nanomaggies) -> ``uint8[H, W, 3]`` colour image.

    Lupton et al. (2004) asinh colour with the black point and softening of ``scale``
    (default: :func:`display_scale` of this image); pass the same scale to images that are
    to be compared side by side.
    """
    flux = np.nan_to_num(np.asarray(flux, dtype=np.float64))
    if flux.ndim != 3 or flux.shape[0] != 4:
        raise ValueError(f"expected [4, H, W] flux (g, r, i, z), got {list(flux.shape)}")
    scale = display_scale(flux) if scale is None else scale
    red, green, blue = (flux[i] for i in RGB_BANDS)
    # astropy's asinh mapping: intensity ``softening`` (above the black point) is linear-ish.
    with np.errstate(invalid="ignore", divide="ignore"):  # astropy divides by 0 where it is black
        return make_lupton_rgb(
            red,
            green,
            blue,
            minimum=list(scale.minimum),
            stretch=scale.softening * LUPTON_Q,
            Q=LUPTON_Q,
        )


def loss_figure(
    train: Sequence[tuple[int, float]],
    val: Sequence[tuple[int, float]] = (),
    lr: Sequence[tuple[int, float]] = (),
    title: str = "",
    probes: Mapping[str, Sequence[tuple[int, float]]] | None = None,
) -> bytes:
    """PNG bytes of train/val loss against iteration (learning rate on a twin axis).

    ``probes`` (label -> (step, R^2) points, from a live probe): a second panel below, R^2
    per label against the same iterations; it is drawn when any label has a point.
    """
    probes = {label: points for label, points in (probes or {}).items() if points}
    if probes:
        fig, (ax, probe_ax) = plt.subplots(
            2, 1, figsize=(7, 6.5), dpi=100, sharex=True, gridspec_kw={"height_ratios": [3, 2]}
        )
    else:
        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="train", color="tab:blue", lw=1)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="val", color="tab:orange", ms=3)
    ax.set_xlabel("iteration")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    if lr:
        ax2 = ax.twinx()
        ax2.plot(*zip(*lr, strict=True), color="tab:gray", lw=0.8, alpha=0.6, label="lr")
        ax2.set_ylabel("learning rate", color="tab:gray")
    if not (train or val):
        ax.text(0.5, 0.5, "no points yet", ha="center", va="center", transform=ax.transAxes)
    ax.legend(loc="upper right")
    ax.set_title(title)
    if probes:
        _probe_panel(probe_ax, probes)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _probe_panel(ax: plt.Axes, probes: Mapping[str, Sequence[tuple[int, float]]]) -> None:
    """R^2 per label against iteration; below -0.5 is clipped to the axis (a useless probe)."""
    for label, points in probes.items():
        steps, values = zip(*points, strict=True)
        ax.plot(steps, np.clip(values, -0.5, 1.0), "o-", ms=3, lw=1, label=label)
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_ylim(-0.5, 1.0)
    ax.set_xlabel("iteration")
    ax.set_ylabel("live probe R²")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=7, ncol=min(3, len(probes)))


def compare_figure(
    runs: Sequence[tuple[str, Sequence[tuple[int, float]], Sequence[tuple[int, float]]]],
    title: str = "",
) -> bytes:
    """PNG bytes of several runs' validation loss (solid) over their train loss (faint),
    one colour per run; ``runs`` = (label, train points, val points)."""
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (label, train, val) in enumerate(runs):
        colour = colours[k % len(colours)]
        if train:
            ax.plot(*zip(*train, strict=True), color=colour, lw=0.8, alpha=0.3)
        if val:
            ax.plot(*zip(*val, strict=True), "o-", color=colour, ms=3, label=label)
        elif train:
            ax.plot([], [], "o-", color=colour, label=f"{label} (no validation yet)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("validation cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title or "validation loss (train loss faint)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def galaxy_grid(rows: Sequence[Sequence[np.ndarray]], titles: Sequence[str]) -> bytes:
    """PNG bytes of a grid of colour panels; each row lists ``[4, H, W]`` flux cubes."""
    n_rows, n_cols = len(rows), len(titles)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(2.2 * n_cols, 2.2 * n_rows), dpi=100, squeeze=False
    )
    for r, row in enumerate(rows):
        scale = display_scale(row[0])  # one scale per row, so panels compare
        for c, flux in enumerate(row):
            axes[r, c].imshow(lupton_rgb(flux, scale), origin="lower")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(titles[c], fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
