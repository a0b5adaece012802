"""GalSim mock of Legacy Survey DR10 cut-outs (g, r, i, z; 160x160 px at 0.262"/px).

Each galaxy is a de Vaucouleurs bulge plus an exponential disk sharing one centre and
orientation, convolved with a per-band Moffat PSF, drawn in nanomaggies (AB zero point
22.5), plus per-band Gaussian sky noise at roughly DR10 depth. Galaxy ``index`` of
``seed`` is always the same image, however it is batched.

Noise level (per-pixel sigma, nanomaggies). DR10 median 5-sigma point-source depths are
about g 24.8, r 24.2, i 23.8, z 23.3 mag. With a 1.3" Moffat PSF the noise-equivalent
area is about 55 px, so sigma_pix = 10**((22.5 - m5) / 2.5) / 5 / sqrt(55) gives
g 0.0032, r 0.0056, i 0.0081, z 0.0129. We use the rounded, slightly conservative values
in :data:`NOISE_SIGMA` and scale them per galaxy by a factor in [0.8, 1.25] to mimic
the spread of depth across the footprint.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import galsim
import numpy as np
from tqdm.auto import tqdm

from astropt.stopping import StopCheck, raise_if_stopped

BANDS = ("DES-G", "DES-R", "DES-I", "DES-Z")
IMAGE_SIZE = 160
PIXEL_SCALE = 0.262  # arcsec / pixel
ZERO_POINT = 22.5  # nanomaggies
NOISE_SIGMA = np.array([0.004, 0.006, 0.010, 0.012])  # per pixel, nanomaggies
GENERATOR_VERSION = "mock-galsim-2"  # 2: pixels quantised to ~sigma/64
MANIFEST_NAME = "manifest.json"
# Written into every mock directory astropt creates: only such a directory is ever replaced.
MARKER_NAME = ".astropt-mock"

_COLOUR_NAMES = ("g_r", "r_i", "i_z")
# Colours (AB mag differences g-r, r-i, i-z): old bulges are redder than star-forming disks.
_BULGE_COLOUR_MEAN = np.array([0.85, 0.40, 0.25])
_BULGE_COLOUR_STD = np.array([0.08, 0.05, 0.05])
_DISK_COLOUR_MEAN = np.array([0.45, 0.20, 0.10])
_DISK_COLOUR_STD = np.array([0.12, 0.07, 0.07])
_PSF_BAND_FACTOR = np.array([1.08, 1.0, 0.97, 0.95])  # seeing improves to the red
_GSPARAMS = galsim.GSParams(maximum_fft_size=16384)


def mag_to_nanomaggies(mag: float | np.ndarray) -> float | np.ndarray:
    return 10.0 ** ((ZERO_POINT - np.asarray(mag)) / 2.5)


def nanomaggies_to_mag(flux: float | np.ndarray) -> float | np.ndarray:
    return ZERO_POINT - 2.5 * np.log10(flux)


def band_fluxes(total_r: float | np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Fluxes in g, r, i, z from an r-band flux and (g-r, r-i, i-z) colours."""
    g_r, r_i, i_z = colours
    mags_rel = np.array([g_r, 0.0, -r_i, -r_i - i_z])  # m_band - m_r
    return total_r * 10.0 ** (-0.4 * mags_rel)


def _draw_params(rng: np.random.Generator) -> dict[str, float]:
    # r magnitudes 17-22, weighted to the faint end like galaxy counts (~10**(0.35 m)).
    slope, lo, hi = 0.35, 17.0, 22.0
    u = rng.uniform()
    mag_r = np.log10(10 ** (slope * lo) + u * (10 ** (slope * hi) - 10 ** (slope * lo))) / slope
    # Size-magnitude relation: ~2" at r=17 down to ~0.5" at r=22, 0.2 dex scatter.
    log_hlr = np.log10(2.0) - (mag_r - 17.0) * np.log10(4.0) / 5.0 + 0.2 * rng.normal()
    disk_hlr = float(np.clip(10**log_hlr, 0.3, 3.0))
    bulge_hlr = float(max(0.3, disk_hlr * rng.uniform(0.25, 0.6)))
    fwhm_r = rng.uniform(1.0, 1.5)
    psf_fwhm = np.clip(fwhm_r * _PSF_BAND_FACTOR, 1.0, 1.6)
    reddening = 0.03 * (mag_r - 17.0)  # fainter galaxies sit at higher redshift
    bulge_colour = rng.normal(_BULGE_COLOUR_MEAN, _BULGE_COLOUR_STD)
    disk_colour = rng.normal(_DISK_COLOUR_MEAN, _DISK_COLOUR_STD)
    bulge_colour[0] += reddening
    disk_colour[0] += reddening
    params: dict[str, float] = {
        "mag_r": float(mag_r),
        "bulge_fraction": float(rng.beta(0.8, 1.6)),
        "bulge_hlr_arcsec": bulge_hlr,
        "disk_hlr_arcsec": disk_hlr,
        "bulge_q": float(rng.uniform(0.6, 1.0)),
        "disk_q": float(rng.uniform(0.2, 1.0)),
        "position_angle_deg": float(rng.uniform(0.0, 180.0)),
        "offset_x_px": float(np.clip(rng.normal(0.0, 0.7), -2.0, 2.0)),
        "offset_y_px": float(np.clip(rng.normal(0.0, 0.7), -2.0, 2.0)),
        "noise_scale": float(rng.uniform(0.8, 1.25)),
    }
    for band, name in enumerate("griz"):
        params[f"psf_fwhm_{name}"] = float(psf_fwhm[band])
    for colour, name in enumerate(_COLOUR_NAMES):
        params[f"bulge_{name}"] = float(bulge_colour[colour])
        params[f"disk_{name}"] = float(disk_colour[colour])
    return params


def _colours(params: dict[str, float], component: str) -> np.ndarray:
    return np.array([params[f"{component}_{name}"] for name in _COLOUR_NAMES])


def _component_fluxes(params: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    total_r = float(mag_to_nanomaggies(params["mag_r"]))
    bulge = band_fluxes(total_r * params["bulge_fraction"], _colours(params, "bulge"))
    disk = band_fluxes(total_r * (1 - params["bulge_fraction"]), _colours(params, "disk"))
    return bulge, disk


def _render(params: dict[str, float], size: int) -> np.ndarray:
    bulge_flux, disk_flux = _component_fluxes(params)
    angle = params["position_angle_deg"] * galsim.degrees
    bulge = galsim.DeVaucouleurs(half_light_radius=params["bulge_hlr_arcsec"], gsparams=_GSPARAMS)
    bulge = bulge.shear(q=params["bulge_q"], beta=angle)
    disk = galsim.Exponential(half_light_radius=params["disk_hlr_arcsec"], gsparams=_GSPARAMS)
    disk = disk.shear(q=params["disk_q"], beta=angle)
    offset = (params["offset_x_px"], params["offset_y_px"])
    truth = np.empty((len(BANDS), size, size), dtype=np.float32)
    for band, name in enumerate("griz"):
        psf = galsim.Moffat(beta=3.5, fwhm=params[f"psf_fwhm_{name}"], gsparams=_GSPARAMS)
        galaxy = bulge.withFlux(bulge_flux[band]) + disk.withFlux(disk_flux[band])
        image = galsim.Convolve(galaxy, psf).drawImage(
            nx=size, ny=size, scale=PIXEL_SCALE, offset=offset
        )
        truth[band] = image.array
    return truth


def object_id(seed: int, index: int) -> str:
    return f"mock-s{seed}-{index:08d}"


def quantisation_step(sigma: np.ndarray) -> np.ndarray:
    """Per-band pixel quantum: the power of two at or below sigma/64.

    Like the quantised compression of survey images, this costs nothing measurable
    (rms error < sigma/400) and makes the stored data set ~5x smaller: rounded floats
    have short mantissas and the truth's far outskirts become exact zeros.
    """
    return np.exp2(np.floor(np.log2(sigma / 64.0))).astype(np.float32)


def quantise(cube: np.ndarray, step: np.ndarray) -> np.ndarray:
    q = step[:, None, None]
    return (np.round(cube / q) * q).astype(np.float32)


def simulate_galaxy(seed: int, index: int, *, size: int = IMAGE_SIZE) -> dict[str, Any]:
    """One mock galaxy: noisy ``flux`` and noise-free ``truth`` float32[4, size, size]."""
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    rng = np.random.default_rng([seed & 0xFFFFFFFF, index, 0x6A1A])
    params = _draw_params(rng)
    truth = _render(params, size)
    sigma = (NOISE_SIGMA * params["noise_scale"]).astype(np.float32)
    noise = rng.standard_normal(truth.shape, dtype=np.float32) * sigma[:, None, None]
    bulge_flux, disk_flux = _component_fluxes(params)
    for band, name in enumerate("griz"):
        params[f"flux_{name}"] = float(bulge_flux[band] + disk_flux[band])
    step = quantisation_step(sigma)
    return {
        "flux": quantise(truth + noise, step),
        "truth": quantise(truth, step),
        "noise_sigma": sigma,
        "bands": list(BANDS),
        "object_id": object_id(seed, index),
        "params": params,
    }


def simulate(n: int, seed: int = 0, start: int = 0) -> Iterator[dict[str, Any]]:
    """Galaxies ``start .. start + n - 1`` of ``seed``."""
    for index in range(start, start + n):
        yield simulate_galaxy(seed, index)


# -- writing a data set in the Hugging Face schema ------------------------------------


def galaxy_features(size: int, param_names: Iterable[str]) -> Any:  # datasets.Features
    """The on-disk schema of a generated galaxy (the seed data set's image struct, the noiseless
    ``truth``, ``noise_sigma`` and the ``params`` truth table): one owner for every generator."""
    from datasets import Array3D, Features, Sequence, Value

    cube = Array3D(shape=(len(BANDS), size, size), dtype="float32")
    return Features(
        {
            "image": {
                "band": Sequence(Value("string")),
                "flux": cube,
                "psf_fwhm": Sequence(Value("float32")),
                "scale": Value("float32"),
            },
            "object_id": Value("string"),
            "truth": cube,
            "noise_sigma": Sequence(Value("float32")),
            "params": {key: Value("float64") for key in param_names},
        }
    )


def galaxy_record(galaxy: dict[str, Any]) -> dict[str, Any]:
    params = galaxy["params"]
    return {
        "image": {
            "band": galaxy["bands"],
            "flux": galaxy["flux"],
            "psf_fwhm": [params[f"psf_fwhm_{b}"] for b in "griz"],
            "scale": PIXEL_SCALE,
        },
        "object_id": galaxy["object_id"],
        "truth": galaxy["truth"],
        "noise_sigma": galaxy["noise_sigma"].tolist(),
        "params": params,
    }


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_complete(
    directory: str | Path, n: int, seed: int, generator_version: str = GENERATOR_VERSION
) -> bool:
    manifest = read_manifest(directory)
    return bool(
        manifest
        and manifest.get("n") == n
        and manifest.get("seed") == seed
        and manifest.get("generator_version") == generator_version
        and all((Path(directory) / f).is_file() for f in manifest.get("files", []))
    )


def write_mock_dataset(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    *,
    shard_size: int = 256,
    progress: bool = True,
    stop: StopCheck | None = None,
) -> Path:
    """Write ``n`` mock galaxies as Parquet shards + ``manifest.json`` into ``out_dir``.

    Reuses ``out_dir`` when its manifest already matches (n, seed, generator version).
    Shards are written into a sibling temporary directory that is renamed into place
    only once complete, so an interrupted run never looks like a finished data set.
    ``stop`` is asked before every galaxy (:class:`StopRequested` when it turns true).
    """
    return write_galaxies(
        out_dir,
        n,
        seed,
        simulate,
        GENERATOR_VERSION,
        {"noise_sigma_nanomaggies": NOISE_SIGMA.tolist()},
        shard_size=shard_size,
        progress=progress,
        stop=stop,
    )


def write_galaxies(
    out_dir: str | Path,
    n: int,
    seed: int,
    make: Callable[[int, int, int], Iterator[dict[str, Any]]],
    generator_version: str,
    manifest_extra: dict[str, Any],
    *,
    shard_size: int = 256,
    progress: bool = True,
    stop: StopCheck | None = None,
) -> Path:
    """The writer of every generator: galaxies ``make(count, seed, start)`` as Parquet shards of
    :func:`galaxy_features` + ``manifest.json``, written beside ``out_dir`` and renamed into
    place (reused when its manifest matches; a directory astropt did not write is refused)."""
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar

    out_dir = Path(out_dir).expanduser().resolve()
    if n < 1 or shard_size < 1:
        raise ValueError(f"n and shard_size must be >= 1 (got n={n}, shard_size={shard_size})")
    if is_complete(out_dir, n, seed, generator_version):
        return out_dir
    if (
        out_dir.exists()
        and (not out_dir.is_dir() or any(out_dir.iterdir()))
        and not (out_dir / MARKER_NAME).is_file()
    ):
        raise FileExistsError(
            f"{out_dir} exists and is not a mock data set created by astropt (no {MARKER_NAME}); "
            "it is left alone: choose an empty or new directory"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    features: Any = None
    files: list[str] = []
    started = time.perf_counter()
    bar = tqdm(total=n, desc="simulating galaxies", unit="gal", disable=not progress)
    disable_progress_bar()
    try:
        for shard, start in enumerate(range(0, n, shard_size)):
            count = min(shard_size, n - start)
            rows = []
            for galaxy in make(count, seed, start):
                raise_if_stopped(stop, "simulating mock galaxies")
                if features is None:
                    features = galaxy_features(IMAGE_SIZE, galaxy["params"])
                rows.append(galaxy_record(galaxy))
                bar.update(1)
            name = f"shard-{shard:05d}.parquet"
            _write_parquet(Dataset.from_list(rows, features=features), tmp / name)
            files.append(name)
        elapsed = time.perf_counter() - started
        size = sum((tmp / f).stat().st_size for f in files)
        manifest = {
            "n": n,
            "seed": seed,
            "generator_version": generator_version,
            "files": files,
            "bands": list(BANDS),
            "image_size": IMAGE_SIZE,
            "pixel_scale_arcsec": PIXEL_SCALE,
            **manifest_extra,
            "bytes_per_galaxy": size / n,
            "seconds_per_galaxy": elapsed / n,
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
        (tmp / MARKER_NAME).write_text("created by astropt; this directory may be replaced\n")
        tmp.chmod(0o755)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        bar.close()
        enable_progress_bar()
    return out_dir


def _write_parquet(dataset: Any, path: Path) -> None:
    """Parquet with zstd and byte-stream-split floats: ~20% smaller than datasets' snappy.

    The table keeps datasets' schema metadata, so ``load_dataset("parquet")`` recovers
    the ``Array3D`` features.
    """
    import pyarrow.parquet as pq

    table = dataset.data.table
    float_columns = [".".join(parts) for parts in _float_leaf_paths(table.schema)]
    pq.write_table(
        table,
        str(path),
        compression="zstd",
        use_dictionary=False,
        use_byte_stream_split=float_columns,
    )


def _float_leaf_paths(schema: Any) -> list[list[str]]:
    import pyarrow as pa

    def walk(prefix: list[str], arrow_type: Any) -> list[list[str]]:
        if isinstance(arrow_type, pa.ExtensionType):
            arrow_type = arrow_type.storage_type
        if pa.types.is_struct(arrow_type):
            return [p for field in arrow_type for p in walk([*prefix, field.name], field.type)]
        if (
            pa.types.is_list(arrow_type)
            or pa.types.is_large_list(arrow_type)
            or pa.types.is_fixed_size_list(arrow_type)
        ):
            return walk([*prefix, "list", "element"], arrow_type.value_type)
        return [prefix] if pa.types.is_floating(arrow_type) else []

    return [p for field in schema for p in walk([field.name], field.type)]


def _replace_dir(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an older mock data set at ``target`` is replaced."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
        new.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        new.rename(target)
