"""Label columns: the mock's truth parameters, or a user's table keyed by ``object_id``.

Mock labels are the ``params`` struct stored with every mock galaxy (``mag_r``, ``bulge_fraction``,
``disk_hlr_arcsec``, ``disk_q``, ``psf_fwhm_r``, ``flux_g`` ...) plus derived ones: AB magnitudes
``mag_<b>`` from the fluxes, total colours ``g_r``, ``r_i``, ``i_z`` and the class label
``bulge_dominated`` (bulge_fraction >= 0.5). A label table is CSV or Parquet with an
``object_id`` column; its other columns are labels.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import cast

import numpy as np

ID_COLUMN = "object_id"


class LabelError(ValueError):
    """Unknown or unusable labels; the message names the valid ones."""


def derived(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The science catalogue's derived columns (magnitudes, colours) and ``bulge_dominated``."""
    from astropt.science.sources import derived_columns

    out = derived_columns(columns)
    if "bulge_fraction" in columns:
        out["bulge_dominated"] = (columns["bulge_fraction"] >= 0.5).astype(np.float64)
    return out


@lru_cache(maxsize=1)
def mock_label_names() -> tuple[str, ...]:
    """Every label a mock galaxy carries (one tiny galaxy is drawn to list them)."""
    from astropt.data.mock import simulate_galaxy

    params = {k: np.array([v]) for k, v in simulate_galaxy(0, 0, size=8)["params"].items()}
    return tuple(sorted({*params, *derived(params)}))


def _read_table(path: Path):  # -> pyarrow.Table
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if not path.is_file():
        raise LabelError(f"label table {path} does not exist")
    try:
        if path.suffix.lower() == ".csv":
            return pacsv.read_csv(path)
        if path.suffix.lower() in (".parquet", ".pq"):
            return pq.read_table(path)
    except Exception as exc:  # pyarrow raises several kinds for malformed files
        raise LabelError(f"cannot read label table {path}: {exc}") from exc
    raise LabelError(f"label table {path}: use a .csv or .parquet file")


def table_label_names(path: str | Path) -> tuple[str, ...]:
    """The label columns of a table (all but ``object_id``, which it must have)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq") and path.is_file():
        names = list(pq.read_schema(path).names)
    else:
        names = list(_read_table(path).schema.names)
    if ID_COLUMN not in names:
        raise LabelError(f"label table {path} has no {ID_COLUMN!r} column (columns: {names})")
    return tuple(n for n in names if n != ID_COLUMN)


def check_labels(labels: list[str], available: tuple[str, ...], where: str) -> None:
    unknown = [name for name in labels if name not in available]
    if unknown:
        raise LabelError(
            f"unknown label(s) {unknown} for {where}; valid labels: {', '.join(available)}"
        )


def available_labels(
    label_table: str | None, source: str, path: str | None = None
) -> tuple[tuple[str, ...], str]:
    """(label names, what they come from) for a data source (``path``: a token data set's
    directory) and an optional table."""
    if label_table:
        return table_label_names(label_table), f"label table {label_table}"
    if source == "tokens" and path:
        return token_label_names(path), f"the columns of the token data set {path}"
    if source != "mock":
        raise LabelError(
            "data that is not the mock has no truth parameters: give a label_table "
            f"(CSV or Parquet with an {ID_COLUMN!r} column)"
        )
    return mock_label_names(), "the mock's truth parameters"


def token_label_names(path: str | Path) -> tuple[str, ...]:
    """The scalar columns a token data set carries (chosen when it was made), and derived ones."""
    from astropt.tokens import TokenDatasetError, open_token_dataset

    try:
        dataset = open_token_dataset(path, verify=False)
    except TokenDatasetError as exc:
        raise LabelError(str(exc)) from exc
    dataset.close()
    names = {name: np.ones(1) for name in dataset.columns}
    return tuple(sorted({*names, *derived(names)}))


def mock_columns(files: list[Path]) -> tuple[list[str], dict[str, np.ndarray]]:
    """Object ids and truth columns of mock Parquet shards, in row order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids: list[str] = []
    parts: dict[str, list[np.ndarray]] = {}
    for file in files:
        table = pq.read_table(file, columns=[ID_COLUMN, "params"])
        ids += [str(x) for x in table.column(ID_COLUMN).to_pylist()]
        params = table.column("params").combine_chunks()
        assert isinstance(params.type, pa.StructType)
        for i in range(params.type.num_fields):
            parts.setdefault(params.type.field(i).name, []).append(
                params.field(i).to_numpy(zero_copy_only=False)
            )
    columns = {k: np.concatenate(v).astype(np.float64) for k, v in parts.items()}
    return ids, {**columns, **derived(columns)}


def table_columns(
    path: str | Path, object_ids: list[str], labels: list[str]
) -> dict[str, np.ndarray]:
    """The ``labels`` of a table for ``object_ids`` (missing objects: NaN / None)."""
    table = _read_table(Path(path))
    names = table.schema.names
    if ID_COLUMN not in names:
        raise LabelError(f"label table {path} has no {ID_COLUMN!r} column (columns: {names})")
    check_labels(labels, tuple(n for n in names if n != ID_COLUMN), f"label table {path}")
    keys = [str(k) for k in table.column(ID_COLUMN).to_pylist()]
    where = {k: i for i, k in enumerate(keys)}
    if len(where) != len(keys):
        raise LabelError(f"label table {path}: object_id values are not unique")
    rows = np.array([where.get(oid, -1) for oid in object_ids])
    out: dict[str, np.ndarray] = {}
    for name in labels:
        values = np.asarray(table.column(name).to_pylist(), dtype=object)
        # numpy's stubs take None for no ArrayLike and pick the one-argument overload (a tuple)
        picked = cast(np.ndarray, np.where(rows >= 0, values[np.maximum(rows, 0)], None))
        try:
            out[name] = np.array([np.nan if v is None else float(v) for v in picked])
        except (TypeError, ValueError):
            out[name] = picked  # strings: a classification label
    return out
