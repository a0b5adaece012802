"""``loss.csv`` and ``loss.png`` of a run directory, consistent across resumes.

``loss.csv`` is appended to: one row per logged step, so a log step costs the same at row 100k
as at row 10. The evaluation of a step that was just logged adds its columns to that (last)
row, which is rewritten in place (the file is truncated to where the row starts). A resume at
step k rewrites the file once, keeping the rows up to k: the rows of a killed attempt after its
checkpoint are re-created by the re-run steps, never duplicated.

A run with a live probe adds one column per probed label (``probe_r2/<label>``, after the
fixed ones); ``loss.png`` then has a second panel of those R^2 values against step.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

from astropt.plotting import loss_figure, write_atomic
from astropt.run_dir import RunDir

COLUMNS = (
    "step",
    "train_loss",
    "val_loss",
    "eval_train_loss",
    "lr",
    "tokens_per_s",
    "mfu",
    "effective_batch_size",
)
PLOTTED = ("train_loss", "val_loss")


class RunLog:
    """Rows keyed by step; on resume at step k, rows after k (from a killed run) are dropped."""

    def __init__(self, out_dir: Path, start_step: int, probe_columns: Sequence[str] = ()):
        self.csv_path = RunDir(out_dir).loss_csv
        self.png_path = RunDir(out_dir).loss_png
        self.columns = (*COLUMNS, *(c for c in probe_columns if c not in COLUMNS))
        self.probe_columns = tuple(probe_columns)
        self.plotted = (*PLOTTED, *self.probe_columns)
        self._series: dict[str, list[tuple[int, float]]] = {key: [] for key in self.plotted}
        self._last_step: int | None = None
        self._last_row: dict[str, float] = {}
        self._last_offset = 0  # where the last row starts in the file
        kept = _read_rows(self.csv_path, start_step) if start_step else []
        self._rewrite(kept)

    def add(self, step: int, **values: float) -> None:
        if step == self._last_step:  # the same step's evaluation: rewrite that row
            self._last_row.update(values)
            self._write_last(truncate=True)
        else:
            self._last_step, self._last_row = step, dict(values)
            self._last_offset = self.csv_path.stat().st_size
            self._write_last(truncate=False)
        for key in self.plotted:
            if key in values:
                self._remember(key, step, values[key])

    def series(self, key: str) -> list[tuple[int, float]]:
        return list(self._series[key])

    def write_plot(self) -> None:
        probes = {key.split("/", 1)[-1]: self.series(key) for key in self.probe_columns}
        png = loss_figure(
            self.series("train_loss"),
            self.series("val_loss"),
            title="AstroPT on AION tokens",
            probes=probes,
        )
        write_atomic(self.png_path, png)

    def _remember(self, key: str, step: int, value: float) -> None:
        series = self._series[key]
        if series and series[-1][0] == step:
            series[-1] = (step, value)
        else:
            series.append((step, value))

    def _write_last(self, truncate: bool) -> None:
        with self.csv_path.open("r+b" if truncate else "ab") as fh:
            if truncate:
                fh.truncate(self._last_offset)
                fh.seek(self._last_offset)
            fh.write(_line(self.columns, self._last_step or 0, self._last_row))
            fh.flush()

    def _rewrite(self, rows: list[tuple[int, dict[str, float]]]) -> None:
        """The file from scratch (start or resume): atomic, so a kill never leaves half of it."""
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.csv_path.with_name(".loss.csv.tmp")
        with tmp.open("wb") as fh:
            fh.write(_line_of(self.columns))
            for step, row in rows:
                self._last_offset, self._last_step, self._last_row = fh.tell(), step, dict(row)
                fh.write(_line(self.columns, step, row))
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self.csv_path)
        for step, row in rows:
            for key in self.plotted:
                if key in row:
                    self._remember(key, step, row[key])


def _read_rows(path: Path, up_to: int) -> list[tuple[int, dict[str, float]]]:
    """Rows up to step ``up_to``, one per step (a later row of a step merges into the earlier)."""
    if not path.is_file():
        return []
    rows: dict[int, dict[str, float]] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            step = int(row["step"])
            if step <= up_to:
                rows.setdefault(step, {}).update(
                    {k: float(v) for k, v in row.items() if k != "step" and v}
                )
    return sorted(rows.items())


def _line(columns: Sequence[str], step: int, row: dict[str, float]) -> bytes:
    return _line_of([step, *(_fmt(row.get(c)) for c in columns[1:])])


def _line_of(cells: object) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)  # type: ignore[arg-type]
    return buffer.getvalue().encode()


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"
