"""A user's label table (CSV or Parquet with an ``object_id`` column) joined onto a catalogue.

Its other columns become catalogue columns, row-aligned by object id: numbers (an object the
table lacks gets NaN), and text and booleans as class names for the logistic probe (an object
the table lacks, or an empty cell, gets ``""``). The probes leave unlabelled rows out; an
object only the table has is ignored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from astropt.science.catalogue import Catalogue, CatalogueError

KEY = "object_id"


def read_label_table(path: str | Path) -> dict[str, np.ndarray]:
    """``object_id`` (str), the numeric columns (float64) and the text and boolean columns
    (str, ``""`` where empty) of a ``.csv`` or ``.parquet`` file."""
    import pyarrow as pa

    path = Path(path)
    if not path.is_file():
        raise CatalogueError(f"label table {path} does not exist")
    try:
        if path.suffix.lower() == ".csv":
            from pyarrow import csv

            table = csv.read_csv(
                path, convert_options=csv.ConvertOptions(column_types={KEY: pa.string()})
            )
        elif path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        else:
            raise CatalogueError(f"label table {path.name}: use a .csv or .parquet file")
    except pa.ArrowInvalid as exc:
        raise CatalogueError(f"label table {path.name} could not be read: {exc}") from exc
    if KEY not in table.column_names:
        raise CatalogueError(
            f"label table {path.name} has no {KEY!r} column (it has {', '.join(table.column_names)})"
        )
    out = {KEY: np.asarray(table.column(KEY).to_pylist(), dtype=str)}
    for name in table.column_names:
        column = table.column(name)
        if name == KEY:
            continue
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            out[name] = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
        elif (
            pa.types.is_boolean(column.type)
            or pa.types.is_string(column.type)
            or pa.types.is_large_string(column.type)
            or pa.types.is_dictionary(column.type)
        ):
            out[name] = np.array(
                ["" if v is None else str(v) for v in column.to_pylist()], dtype=str
            )
    if len(out) == 1:
        raise CatalogueError(f"label table {path.name} has no label column besides {KEY!r}")
    return out


def join_labels(
    catalogue: Catalogue, table: dict[str, np.ndarray], where: str = "the label table"
) -> Catalogue:
    """``catalogue`` with the table's columns added (NaN or ``""`` where an object is missing)."""
    ids = table[KEY]
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise CatalogueError(f"{where} lists object {unique[counts > 1][0]!r} more than once")
    clash = sorted(set(table) - {KEY} & set(catalogue.columns))
    if clash:
        raise CatalogueError(
            f"{where} has columns the catalogue already has ({', '.join(clash)}); rename them"
        )
    row = {oid: i for i, oid in enumerate(ids)}
    rows = np.array([row.get(oid, -1) for oid in catalogue.object_ids])
    if (rows < 0).all():
        raise CatalogueError(
            f"no object of the catalogue is in {where} (match on {KEY!r}, e.g. "
            f"{catalogue.object_ids[0]!r})"
        )
    columns = dict(catalogue.columns)
    for name, values in table.items():
        if name != KEY:
            missing = "" if values.dtype.kind == "U" else np.nan
            columns[name] = np.where(rows >= 0, values[np.maximum(rows, 0)], missing)
    return Catalogue(catalogue.object_ids, catalogue.embeddings, columns, catalogue.manifest)
