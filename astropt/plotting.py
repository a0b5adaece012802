"""Figures: loss curves and colour (Lupton RGB) galaxy panels."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from astropy.visualization import make_lupton_rgb  # noqa: E402

# Colour from g, r, z (blue, green, red) as Legacy Survey viewers do.
RGB_BANDS = (3, 1, 0)
LUPTON_Q = 8.0
PEAK_TO_STRETCH = 4.0  # stretch = bright end / 4: the bright end lands at ~half brightness
MIN_STRETCH = 1e-3  # nanomaggies; keeps blank images from dividing by ~0


def display_stretch(flux: np.ndarray) -> float:
    """A Lupton stretch (nanomaggies) that suits ``[4, H, W]`` flux: faint galaxies stay visible."""
    rgb = np.nan_to_num(np.asarray(flux, dtype=np.float64)[list(RGB_BANDS)]).mean(axis=0)
    return max(float(np.percentile(rgb, 99.5)) / PEAK_TO_STRETCH, MIN_STRETCH)


def lupton_rgb(flux: np.ndarray, stretch: float | None = None, minimum: float = 0.0) -> np.ndarray:
    """``[4, H, W]`` g, r, i, z flux (nanomaggies) -> ``uint8[H, W, 3]`` colour image.

    Without ``stretch`` one is chosen from the image itself; pass the same stretch to
    images that are to be compared side by side.
    """
    flux = np.nan_to_num(np.asarray(flux, dtype=np.float64))
    if flux.ndim != 3 or flux.shape[0] != 4:
        raise ValueError(f"expected [4, H, W] flux (g, r, i, z), got {list(flux.shape)}")
    stretch = display_stretch(flux) if stretch is None else stretch
    red, green, blue = (flux[i] for i in RGB_BANDS)
    return make_lupton_rgb(red, green, blue, minimum=minimum, stretch=stretch, Q=LUPTON_Q)


def loss_figure(
    train: Sequence[tuple[int, float]],
    val: Sequence[tuple[int, float]] = (),
    lr: Sequence[tuple[int, float]] = (),
    title: str = "",
) -> bytes:
    """PNG bytes of train/val loss against iteration (learning rate on a twin axis)."""
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
        stretch = display_stretch(row[0])  # one stretch per row, so panels compare
        for c, flux in enumerate(row):
            axes[r, c].imshow(lupton_rgb(flux, stretch), origin="lower")
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
