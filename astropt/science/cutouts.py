"""The image of any catalogue row, read back from the catalogue's source, and small PNG cut-outs.

:class:`RowImages` finds row ``i`` of a catalogue again where its embed job read it:

- ``mock``: made again from the mock's seed and index (exactly the pixels embedded);
- ``local``: the row of the local files (FITS / ``.npy`` cubes, Parquet / Arrow tables), if
  they still have the object at that row;
- ``hf``: the row of the (local or hub) data set, streamed up to it;
- ``tokens``: the row's tokens in the token data set, decoded by the catalogue's codec
  (labelled ``codec-decoded``: the data set holds no pixels);
- otherwise, where the codec tokens of the source are in the token cache
  (:mod:`astropt.science.token_cache`), the tokens decoded by the catalogue's codec: an image
  of what the model read, labelled ``codec-decoded``.

What it returns is the 96x96 centre crop the model reads. :func:`cutout_png` draws it in the
noise-aware asinh stretch of ``/reconstruct`` (:func:`astropt.plotting.display_scale`), each
galaxy on its own scale; :func:`gallery_png` tiles cut-outs with captions.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from astropt.images import centre_crop

PIXELS, DECODED = "pixels", "codec-decoded"
CUTOUT_ZOOM = 2  # a 96x96 crop becomes a 192x192 PNG
CUTOUT_DIR = "cutouts"  # inside the catalogue directory


class ImageUnavailable(LookupError):
    """The row's image cannot be read back (source gone, or changed); the reason says which."""


@dataclass
class GalaxyImage:
    flux: np.ndarray  # float32 [4, 96, 96], nanomaggies (g, r, i, z)
    origin: str  # PIXELS or DECODED


class RowImages:
    """Row images of one catalogue (its ``manifest``); sources are opened on first use."""

    def __init__(self, manifest: dict[str, Any]) -> None:
        self.manifest = manifest
        self.source: dict[str, Any] = manifest.get("data_source") or {}
        self._rows: Any = None

    def image(self, row: int, object_id: str) -> GalaxyImage:
        kind = self.source.get("kind")
        try:
            if kind == "mock":
                return GalaxyImage(self._mock(row, object_id), PIXELS)
            if kind == "local":
                return GalaxyImage(self._local(row, object_id), PIXELS)
            if kind == "hf":
                return GalaxyImage(self._streamed(row, object_id), PIXELS)
            if kind == "tokens":
                return GalaxyImage(self._token_set(row, object_id), DECODED)
            raise ImageUnavailable(f"no images for a {kind!r} source")
        except ImageUnavailable as missing:
            decoded = self._decoded(row)
            if decoded is None:
                raise missing from None
            return GalaxyImage(decoded, DECODED)

    def _mock(self, row: int, object_id: str) -> np.ndarray:
        from astropt.data.mock import object_id as mock_id
        from astropt.data.mock import simulate_galaxy

        seed = int(self.source["seed"])
        if mock_id(seed, row) != object_id:
            raise ImageUnavailable(f"object {object_id!r} is not galaxy {row} of mock seed {seed}")
        return centre_crop(simulate_galaxy(seed, row)["flux"]).astype(np.float32)

    def _spec(self) -> Any:
        from astropt.science.sources import SourceSpec

        identity = self.source.get("identity") or []
        if self.source.get("kind") == "local":
            column = (
                identity[2]
                if len(identity) > 2 and isinstance(identity[2], str)
                else "legacysurvey_image"
            )
            return SourceSpec("local", path=self.source.get("path"), image_column=column)
        return SourceSpec(
            "hf",
            path=self.source.get("dataset"),
            hf_split=self.source.get("split", "train"),
            streaming=bool(self.source.get("streaming", True)),
        )

    def _local(self, row: int, object_id: str) -> np.ndarray:
        from astropt.data.sources import open_rows

        try:
            if self._rows is None:
                self._rows = open_rows(self._spec().settings())[0]
            keys = self._rows.keys()
            if row >= len(keys) or str(keys[row]) != object_id:
                raise ImageUnavailable(
                    f"the local source no longer has object {object_id!r} at row {row}"
                )
            return centre_crop(np.asarray(self._rows.sample(row)["flux"], dtype=np.float32))
        except (OSError, ValueError) as exc:
            raise ImageUnavailable(f"the local source cannot be read: {exc}") from exc

    def _streamed(self, row: int, object_id: str) -> np.ndarray:
        from astropt.science.stream_embed import StreamedRows

        try:
            for oid, flux, _ in StreamedRows(self._spec()).rows(row):
                if str(oid) != object_id:
                    raise ImageUnavailable(
                        f"row {row} of the data set is {oid!r}, not {object_id!r}"
                    )
                return centre_crop(np.asarray(flux, dtype=np.float32))
        except (OSError, ValueError, ConnectionError) as exc:
            raise ImageUnavailable(f"the data set cannot be streamed here: {exc}") from exc
        raise ImageUnavailable(f"the data set ends before row {row}")

    def _token_set(self, row: int, object_id: str) -> np.ndarray:
        """A catalogue embedded from a token data set: the row's tokens decoded by its codec."""
        from astropt.tokens import TokenDatasetError, open_token_dataset
        from astropt.tokens.format import ID_COLUMN, shard_arrays

        if not self.source.get("path"):
            raise ImageUnavailable("the catalogue's source names no token data set")
        try:
            if self._rows is None:
                self._rows = open_token_dataset(str(self.source["path"]), verify=False)
            dataset = self._rows
            if not 0 <= row < len(dataset):
                raise ImageUnavailable(f"the token data set has no row {row}")
            shard = int(np.searchsorted(dataset.starts, row, side="right")) - 1
            table, _ = shard_arrays(dataset.shards[shard].path)
            found = str(table.column(ID_COLUMN)[row - int(dataset.starts[shard])].as_py())
            if found != object_id:
                raise ImageUnavailable(
                    f"row {row} of the token data set is {found!r}, not {object_id!r}"
                )
            tokens = dataset.take([row])
        except (OSError, TokenDatasetError) as exc:
            raise ImageUnavailable(f"the token data set cannot be read: {exc}") from exc
        return self._decode(tokens)

    def _decode(self, tokens: np.ndarray) -> np.ndarray:
        from astropt.codec import load_codec
        from astropt.constants import DEFAULT_BANDS

        handle = load_codec((self.manifest.get("codec") or {})["spec"])
        return handle.decode(tokens.astype(np.int64), DEFAULT_BANDS)[0].numpy().astype(np.float32)

    def _decoded(self, row: int) -> np.ndarray | None:
        """The row's cached codec tokens decoded, or None (no codec, or no cached shard)."""
        from astropt.constants import DEFAULT_BANDS
        from astropt.science.token_cache import TokenShards

        codec = self.manifest.get("codec") or {}
        shard_rows = int(self.manifest.get("shard_rows") or 0)
        if (
            not codec.get("spec")
            or shard_rows < 1
            or self.source.get("kind") not in ("mock", "local")
        ):
            return None
        start = row - row % shard_rows
        span = range(start, min(start + shard_rows, int(self.manifest.get("count", 0))))
        data_source = dict(self.source)  # the embed job's key of the token cache (default bands)
        tokens = TokenShards.for_source(
            data_source, codec.get("fingerprint", ""), DEFAULT_BANDS
        ).load(span)
        if tokens is None:
            return None
        return self._decode(tokens[row - start : row - start + 1])


def cutout_rgb(flux: np.ndarray) -> np.ndarray:
    """``uint8 [H, W, 3]``: the noise-aware asinh stretch of ``/reconstruct``, its own scale."""
    from astropt.plotting import lupton_rgb

    return np.flipud(lupton_rgb(flux))  # north up, as the figures draw it (origin lower)


def _png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def cutout_png(image: GalaxyImage, zoom: int = CUTOUT_ZOOM) -> bytes:
    """A small PNG of the galaxy; a codec-decoded one says so in its corner."""
    from PIL import Image, ImageDraw

    rgb = Image.fromarray(cutout_rgb(image.flux)).resize(
        (image.flux.shape[2] * zoom, image.flux.shape[1] * zoom), Image.Resampling.NEAREST
    )
    if image.origin == DECODED:
        ImageDraw.Draw(rgb).text((4, rgb.height - 14), "codec-decoded", fill=(255, 200, 0))
    return _png(rgb)


def gallery_png(
    images: Sequence[GalaxyImage | None],
    captions: Sequence[str],
    title: str,
    columns: int = 8,
    tile: int = 128,
) -> bytes:
    """PNG: the cut-outs in a grid (``columns`` wide, ``tile`` px each) with a caption under
    each; a missing image (None) is a grey tile; decoded ones are marked ``decoded``."""
    from PIL import Image, ImageDraw

    columns = max(1, min(columns, len(images) or 1))
    rows = -(-len(images) // columns) if images else 1
    caption_h, title_h = 14, 20
    sheet = Image.new("RGB", (columns * tile, title_h + rows * (tile + caption_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 4), title[:160], fill=(0, 0, 0))
    for i, (image, caption) in enumerate(zip(images, captions, strict=True)):
        x, y = (i % columns) * tile, title_h + (i // columns) * (tile + caption_h)
        if image is None:
            draw.rectangle((x + 1, y + 1, x + tile - 2, y + tile - 2), fill=(160, 160, 160))
        else:
            sheet.paste(
                Image.fromarray(cutout_rgb(image.flux)).resize(
                    (tile - 2, tile - 2), Image.Resampling.NEAREST
                ),
                (x + 1, y + 1),
            )
            if image.origin == DECODED:
                draw.text((x + 4, y + 2), "decoded", fill=(255, 200, 0))
        draw.text((x + 2, y + tile), caption[: tile // 6], fill=(0, 0, 0))
    return _png(sheet)


def cutout_cache_path(catalogue_dir: str | Path, object_id: str, origin: str = PIXELS) -> Path:
    """Where a row's cut-out is kept: ``cutouts/<sha256 of the object id>[.decoded].png`` in
    the catalogue directory (a new catalogue in its place starts without them)."""
    stem = hashlib.sha256(object_id.encode()).hexdigest()[:32]
    return (
        Path(catalogue_dir)
        / CUTOUT_DIR
        / (f"{stem}.decoded.png" if origin == DECODED else f"{stem}.png")
    )


def read_cached(catalogue_dir: str | Path, object_id: str) -> tuple[bytes, str] | None:
    """``(png, origin)`` of a cut-out made before, or None."""
    for origin in (PIXELS, DECODED):
        try:
            return cutout_cache_path(catalogue_dir, object_id, origin).read_bytes(), origin
        except OSError:
            continue
    return None


def write_cached(catalogue_dir: str | Path, object_id: str, png: bytes, origin: str) -> None:
    """Written whole under a temporary name and renamed; a read-only catalogue stays uncached."""
    write_bytes(cutout_cache_path(catalogue_dir, object_id, origin), png)


def write_bytes(path: Path, data: bytes) -> None:
    """``data`` written whole under a temporary name and renamed to ``path`` (its directory made);
    where that fails (a read-only catalogue) nothing is written."""
    try:
        path.parent.mkdir(exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.write_bytes(data)
        os.replace(partial, path)
    except OSError:
        pass
