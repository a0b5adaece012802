"""Rendering reconstructions: PNG panels (Lupton RGB) and FITS / NumPy serialisation.

Panels, left to right: ``original`` (the input's central 96x96 crop), ``codec`` (the codec
round trip: the best the model could do), ``model`` (the model's reconstruction) and
``residual`` (model - original, averaged over the input's bands, blue negative / red
positive). In codec mode the model panel is absent and the residual is codec - original.

Colour: Lupton et al. (2004) asinh RGB from z, r, g (red, green, blue), as Legacy Survey
viewers do, with :func:`astropt.plotting.display_scale`: black at the original's sky level,
the asinh softening from its sky noise (faint galaxies show on a dark sky, noise stays dim)
or from its bright end when that needs more room. One scale serves all panels of a figure,
so they are comparable.
"""

from __future__ import annotations

import io
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from astropt.constants import DEFAULT_BANDS
from astropt.inference.pipeline import Reconstruction
from astropt.plotting import DisplayScale, display_scale, lupton_rgb

PanelKind = Literal["all", "single"]
SCALE = 2  # each 96-pixel panel is drawn at 192 pixels (nearest neighbour)
GAP = 4
LABEL_HEIGHT = 16


def panel_titles(recon: Reconstruction, panel: PanelKind = "all") -> list[str]:
    if panel == "single":
        return ["codec" if recon.model is None else "model"]
    middle = ["codec"] if recon.model is None else ["codec", "model"]
    if recon.codec is None:  # patch-token models have no codec
        middle = ["model"]
    return ["original", *middle, "residual"]


def png_size(n_panels: int, side: int = 96) -> tuple[int, int]:
    """(width, height) of the PNG for ``n_panels`` panels of ``side`` pixels."""
    width = n_panels * side * SCALE + (n_panels - 1) * GAP
    return width, side * SCALE + LABEL_HEIGHT


def original_full_bands(recon: Reconstruction) -> np.ndarray:
    """The input crop as ``[4, 96, 96]``; a band the input lacked is taken from the codec's
    round trip (display only: that band is the codec's inference)."""
    full = (recon.output if recon.codec is None else recon.codec).copy()
    for i, band in enumerate(recon.bands):
        full[DEFAULT_BANDS.index(band)] = recon.original[i]
    return full


def lupton(flux: np.ndarray, scale: DisplayScale) -> np.ndarray:
    """``[4, H, W]`` DES g, r, i, z flux -> ``uint8[H, W, 3]``."""
    return lupton_rgb(flux, scale)


def residual_rgb(recon: Reconstruction, scale: DisplayScale) -> np.ndarray:
    """Diverging colour map of (output - original) averaged over the input's bands."""
    import matplotlib

    index = [DEFAULT_BANDS.index(b) for b in recon.bands]
    diff = (recon.output[index] - recon.original).mean(axis=0)
    limit = max(scale.bright, scale.softening)  # the original's bright end: residuals on its scale
    colours = matplotlib.colormaps["RdBu_r"](np.clip(diff / limit, -1.0, 1.0) * 0.5 + 0.5)
    return (colours[..., :3] * 255).round().astype(np.uint8)


def render_png(recon: Reconstruction, panel: PanelKind = "all") -> bytes:
    """The panel strip (or one panel) as PNG bytes; see :func:`png_size` for its size."""
    original = original_full_bands(recon)
    scale = display_scale(original)

    def codec_panel() -> np.ndarray:
        assert recon.codec is not None  # panel_titles names the codec panel only when there is one
        return lupton(recon.codec, scale)

    images = {
        "original": lambda: lupton(original, scale),
        "codec": codec_panel,
        "model": lambda: lupton(recon.output, scale),
        "residual": lambda: residual_rgb(recon, scale),
    }
    titles = panel_titles(recon, panel)
    side = recon.output.shape[-1]
    canvas = Image.new("RGB", png_size(len(titles), side), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for k, title in enumerate(titles):
        # Lupton arrays are row 0 = bottom (FITS convention); flip so north is up in the PNG.
        tile = Image.fromarray(np.ascontiguousarray(images[title]()[::-1]))
        tile = tile.resize((side * SCALE, side * SCALE), Image.Resampling.NEAREST)
        x = k * (side * SCALE + GAP)
        canvas.paste(tile, (x, LABEL_HEIGHT))
        draw.text((x + 2, 2), title, fill="black", font=font)
    out = io.BytesIO()
    canvas.save(out, format="PNG", compress_level=1)  # zlib level 6 takes ~4x longer for ~10% less
    return out.getvalue()


def _band_header(bands: tuple[str, ...]):
    from astropy.io import fits

    header = fits.Header()
    header["BUNIT"] = ("nanomaggy", "flux unit (22.5 mag zero point)")
    for k, band in enumerate(bands, start=1):
        header[f"BAND{k}"] = (band, f"band of plane {k}")
    return header


def to_fits(recon: Reconstruction, metrics: dict | None = None) -> bytes:
    """Primary HDU: the main decoded cube [4, 96, 96]; extensions CODEC and ORIGINAL.
    Every HDU names its planes with ``BAND1..BANDn`` (readable back by the upload parser)."""
    from astropy.io import fits

    primary = fits.PrimaryHDU(recon.output.astype(np.float32), header=_band_header(DEFAULT_BANDS))
    primary.header["MODE"] = (recon.mode, "astropt reconstruction mode")
    for key, value in (metrics or recon.metrics()).items():
        if isinstance(value, float) and np.isfinite(value):
            primary.header[f"HIERARCH ASTROPT {key.upper()}"] = value
    hdus = [primary]
    if recon.codec is not None:
        hdus.append(
            fits.ImageHDU(
                recon.codec.astype(np.float32), header=_band_header(DEFAULT_BANDS), name="CODEC"
            )
        )
    hdus.append(
        fits.ImageHDU(
            recon.original.astype(np.float32), header=_band_header(recon.bands), name="ORIGINAL"
        )
    )
    out = io.BytesIO()
    fits.HDUList(hdus).writeto(out)
    return out.getvalue()


def to_npy(recon: Reconstruction) -> bytes:
    """The main decoded cube ``float32[4, 96, 96]`` (DES g, r, i, z) as ``.npy``."""
    out = io.BytesIO()
    np.save(out, recon.output.astype(np.float32), allow_pickle=False)
    return out.getvalue()
