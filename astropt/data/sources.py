"""One loading path for every data source: ``open_split(cfg, "train" | "val")``.

- ``mock``: the GalSim mock is written once as Parquet (see :mod:`astropt.data.mock`) and
  read back exactly like a local Parquet data set;
- ``local``: FITS / ``.npy`` cubes or Parquet / Arrow tables in the Hugging Face schema;
- ``hf``: any Hugging Face dataset, streamed (``streaming=True``) or downloaded.

Finite sources return a :class:`FiniteSplit` (``len``, indexing, ``fingerprint``); streams
return a :class:`StreamSplit`. Train/val membership is a hash of each galaxy's object id
(or row number), and DDP rank ``r`` of ``w`` gets every ``w``-th sample of its split.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from astropt.config import DataSettings
from astropt.data.local import CubeFiles, check_table_files, discover
from astropt.data.mock import read_manifest, write_mock_dataset
from astropt.data.samples import DataSourceError, check_split, raw_sample_from_row, split_of
from astropt.data.tables import FileRows
from astropt.stopping import StopCheck

SAMPLE_COLUMNS = ("image", "object_id", "truth", "noise_sigma")
HUB_PROBE_TIMEOUT_S = 5.0


class FiniteSplit:
    """The samples of one split (and one DDP rank) of a finite data set."""

    def __init__(
        self,
        read: Callable[[int], dict[str, Any]],
        indices: list[int],
        fingerprint: str,
        keys: list[str] | None = None,
    ):
        self._read = read
        self._indices = indices
        self._fingerprint = fingerprint
        self._keys = keys

    @property
    def fingerprint(self) -> str:
        """Stable id of (data, split, val_fraction, rank, world_size, bands): a cache key."""
        return self._fingerprint

    @property
    def object_ids(self) -> list[str] | None:
        """The samples' ids (``object_id``, else ``row-N``), in order, without reading pixels."""
        return list(self._keys) if self._keys is not None else None

    @property
    def indices(self) -> list[int]:
        """Row numbers in the underlying data set."""
        return list(self._indices)

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, position: int) -> dict[str, Any]:
        return self._read(self._indices[position])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for index in self._indices:
            yield self._read(index)


class StreamSplit:
    """Raw samples from a ``datasets.IterableDataset`` (already split, sharded, shuffled)."""

    def __init__(
        self, stream: Any, bands: tuple[str, ...], what: str, image_column: str = "image"
    ) -> None:
        self.stream = stream
        self._bands = bands
        self._what = what
        self._image_column = image_column

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle differently each epoch (same seed + epoch -> same order)."""
        self.stream.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for row in self.stream:
            if self._image_column != "image":
                # per row: IterableDataset.rename_column re-encodes every row through Python
                # lists (3 s a row of 4x152x152 floats, against 0.1 s read as it is)
                row["image"] = row.pop(self._image_column)
            yield raw_sample_from_row(row, self._bands, self._what)


# -- tables (Parquet / Arrow / Hugging Face) --------------------------------------------


class TableRows:
    """Random access to a ``datasets.Dataset`` in the Hugging Face schema (hf, not streamed)."""

    is_table = True

    def __init__(
        self,
        dataset: Any,
        bands: tuple[str, ...],
        files: list[Path] | None = None,
        rows_per_file: list[int] | None = None,
    ) -> None:
        self.dataset = dataset
        self.bands = bands
        self.files = files or []
        self._offsets = _cumulative(rows_per_file or [])

    def __len__(self) -> int:
        return len(self.dataset)

    def keys(self) -> list[str]:
        if "object_id" in self.dataset.column_names:
            return [str(k) for k in self.dataset.data.column("object_id").to_pylist()]
        return [f"row-{i}" for i in range(len(self.dataset))]

    def where(self, index: int) -> str:
        if not self.files:
            return f"row {index}"
        file = bisect.bisect_right(self._offsets, index) - 1
        return f"{self.files[file]} (row {index - self._offsets[file]})"

    def sample(self, index: int) -> dict[str, Any]:
        return raw_sample_from_row(
            self.dataset[index], self.bands, self.where(index), f"row-{index}"
        )

    def check_each_file(self) -> None:
        """Decode the first row of every file so a wrong shape fails now, naming the file."""
        for start in self._offsets[:-1]:
            if start < len(self.dataset):
                self.sample(start)


def _cumulative(counts: list[int]) -> list[int]:
    offsets = [0]
    for count in counts:
        offsets.append(offsets[-1] + count)
    return offsets


def _prepare_table(dataset: Any, image_column: str) -> Any:
    if image_column != "image" and image_column in dataset.column_names:
        if "image" in dataset.column_names:
            dataset = dataset.remove_columns("image")
        dataset = dataset.rename_column(image_column, "image")
    if "image" not in dataset.column_names:
        raise DataSourceError(
            f"no image column: looked for {image_column!r} and 'image' in "
            f"{dataset.column_names}; set data.image_column"
        )
    return dataset.select_columns([c for c in SAMPLE_COLUMNS if c in dataset.column_names])


def _open_table_files(files: list[Path], cfg: DataSettings) -> FileRows:
    """Parquet / Arrow files read with pyarrow in order (:mod:`astropt.data.tables`): no
    ``datasets`` conversion, so memory stays flat in the number of files and rows."""
    column, rows_per_file = check_table_files(files, cfg.image_column)
    builders = {"parquet" if f.name.lower().endswith(".parquet") else "arrow" for f in files}
    if len(builders) > 1:
        raise DataSourceError("mixed Parquet and Arrow files; convert them to one format")
    rows = FileRows(files, rows_per_file, column, cfg.bands)
    rows.check_each_file()
    return rows


def _file_signature(files: list[Path]) -> list[tuple[str, int, int]]:
    signature = []
    for file in files:
        stat = file.stat()
        signature.append((file.resolve().as_posix(), stat.st_size, stat.st_mtime_ns))
    return signature


def _finite_split(
    rows: TableRows | FileRows | CubeFiles,
    identity: Any,
    cfg: DataSettings,
    split: str,
    rank: int,
    world_size: int,
) -> FiniteSplit:
    keys = list(rows.keys())
    in_split = [i for i, key in enumerate(keys) if split_of(key, cfg.val_fraction) == split]
    if not in_split:
        raise DataSourceError(
            f"the {split} split is empty ({len(rows)} samples, val_fraction="
            f"{cfg.val_fraction}); use more data or change data.val_fraction"
        )
    blob = json.dumps(
        [identity, split, cfg.val_fraction, rank, world_size, list(cfg.bands)], default=str
    )
    fingerprint = hashlib.sha256(blob.encode()).hexdigest()[:16]
    mine = in_split[rank::world_size]
    return FiniteSplit(rows.sample, mine, fingerprint, [keys[i] for i in mine])


# -- mock -------------------------------------------------------------------------------


def mock_dir(cfg: DataSettings) -> Path:
    """``data.path``, else ``$ASTROPT_DATA_DIR/mock/n{N}_seed{S}`` or ``~/.cache/astropt/...``."""
    if cfg.path:
        return Path(cfg.path).expanduser().resolve()
    base = os.environ.get("ASTROPT_DATA_DIR")
    root = Path(base).expanduser() / "mock" if base else Path.home() / ".cache/astropt/mock"
    return (root / f"n{cfg.n_mock}_seed{cfg.mock_seed}").resolve()


def ensure_mock(
    cfg: DataSettings, *, progress: bool = True, stop: StopCheck | None = None
) -> list[Path]:
    """Generate the mock data set once (safe when several DDP ranks race); its shard files."""
    from filelock import FileLock

    out = mock_dir(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out.with_name(out.name + ".lock"))):
        try:
            write_mock_dataset(out, cfg.n_mock, cfg.mock_seed, progress=progress, stop=stop)
        except FileExistsError as exc:
            raise DataSourceError(f"data.path for the mock: {exc}") from exc
    manifest = read_manifest(out) or {}
    return [out / name for name in manifest.get("files", [])]


# -- Hugging Face hub -------------------------------------------------------------------


def _alternatives() -> str:
    return (
        "Alternatives: data.source=mock (GalSim mock galaxies generated locally) or "
        "data.source=local with data.path pointing at FITS/.npy/Parquet files in the same "
        "schema; if the dataset is already in your Hugging Face cache, set HF_HUB_OFFLINE=1."
    )


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_DATASETS_OFFLINE") == "1"


def _probe_hub(dataset_id: str) -> None:
    """Fail in seconds (not a long hang) when the hub or the dataset cannot be reached."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().dataset_info(dataset_id, timeout=HUB_PROBE_TIMEOUT_S)
    except GatedRepoError as exc:
        raise DataSourceError(
            f"dataset {dataset_id!r} is gated: accept its terms on huggingface.co and set HF_TOKEN"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise DataSourceError(
            f"dataset {dataset_id!r} was not found on the hub (or is private: set HF_TOKEN)"
        ) from exc
    except Exception as exc:  # network errors come from several HTTP libraries
        raise DataSourceError(
            f"cannot reach the Hugging Face hub for dataset {dataset_id!r} "
            f"({type(exc).__name__}: {exc}). {_alternatives()}"
        ) from exc


def load_hf(cfg: DataSettings) -> Any:
    """``load_dataset(hf_dataset, split, streaming)`` with errors a person can act on."""
    from datasets import load_dataset

    is_local = Path(cfg.hf_dataset).expanduser().exists()
    if not is_local and not _offline():
        _probe_hub(cfg.hf_dataset)
    try:
        return load_dataset(cfg.hf_dataset, split=cfg.hf_split, streaming=cfg.streaming)
    except (ConnectionError, TimeoutError) as exc:
        raise DataSourceError(
            f"cannot reach the Hugging Face hub for dataset {cfg.hf_dataset!r} ({exc}). "
            f"{_alternatives()}"
        ) from exc
    except (FileNotFoundError, ValueError) as exc:
        raise DataSourceError(
            f"cannot load {cfg.hf_dataset!r} split {cfg.hf_split!r}: {exc}"
        ) from exc


def _stream_split(
    stream: Any, cfg: DataSettings, split: str, rank: int, world_size: int, seed: int
) -> StreamSplit:
    from datasets.distributed import split_dataset_by_node

    columns = stream.column_names
    if columns is not None and cfg.image_column not in columns and "image" not in columns:
        raise DataSourceError(
            f"{cfg.hf_dataset}: no image column {cfg.image_column!r} (columns: {columns}); "
            "set data.image_column"
        )
    image_column = cfg.image_column if columns is None or cfg.image_column in columns else "image"
    if columns is not None:
        wanted = [image_column, *(c for c in SAMPLE_COLUMNS if c != "image")]
        stream = stream.select_columns([c for c in wanted if c in columns])
    stream = stream.with_format("numpy")  # flux as arrays, not nested Python lists
    val_fraction = cfg.val_fraction

    def in_split(row: dict[str, Any], index: int) -> bool:
        key = row.get("object_id")
        return split_of(str(key) if key is not None else f"row-{index}", val_fraction) == split

    stream = stream.filter(in_split, with_indices=True)
    if world_size > 1:
        stream = split_dataset_by_node(stream, rank=rank, world_size=world_size)
    if split == "train":
        stream = stream.shuffle(seed=seed, buffer_size=cfg.shuffle_buffer)
    return StreamSplit(stream, cfg.bands, cfg.hf_dataset, image_column)


# -- the one entry point ----------------------------------------------------------------


def open_split(
    cfg: DataSettings,
    split: str,
    *,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    stop: StopCheck | None = None,
) -> FiniteSplit | StreamSplit:
    """Raw samples ``{"flux": float32[4,H,W], "bands": [...], ...}`` of one split and rank.

    ``stop`` is asked while a mock data set is generated (:class:`StopRequested`).

    ``seed`` seeds the shuffle buffer of streamed train splits; finite splits are in a
    fixed order (the training loop shuffles indices itself).
    """
    check_split(split)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    if cfg.source == "hf":
        dataset = load_hf(cfg)
        if cfg.streaming:
            return _stream_split(dataset, cfg, split, rank, world_size, seed)
        rows: TableRows | FileRows | CubeFiles = TableRows(
            _prepare_table(dataset, cfg.image_column).with_format("numpy"), cfg.bands
        )
        identity = ["hf", cfg.hf_dataset, cfg.hf_split, dataset._fingerprint]
        return _finite_split(rows, identity, cfg, split, rank, world_size)
    rows, identity = open_rows(cfg, stop=stop)
    return _finite_split(rows, identity, cfg, split, rank, world_size)


def open_rows(
    cfg: DataSettings, stop: StopCheck | None = None
) -> tuple[FileRows | CubeFiles, list[Any]]:
    """Every sample of a finite ``mock`` or ``local`` source (no split), and its identity;
    ``stop`` is asked while a mock data set is generated (:class:`StopRequested`).

    ``rows.keys()`` are the object ids, ``rows.sample(i)`` the raw samples and
    ``rows.files`` the files read, in row order.
    """
    if cfg.source == "mock":
        kind, files = "table", ensure_mock(cfg, stop=stop)
    elif cfg.source != "local":
        raise DataSourceError(f"open_rows reads mock or local sources, not {cfg.source!r}")
    elif not cfg.path:
        raise DataSourceError("data.path is required when data.source is 'local'")
    else:
        kind, files = discover(cfg.path)
    if kind == "cube":
        assert cfg.path  # only a local source is a folder of cubes
        rows: FileRows | CubeFiles = CubeFiles(Path(cfg.path).expanduser(), files, cfg.bands)
    else:
        rows = _open_table_files(files, cfg)
    return rows, [kind, _file_signature(files), cfg.image_column]
