"""``loss.csv`` and ``loss.png`` of a run directory, consistent across resumes."""

from __future__ import annotations

import csv
from pathlib import Path

from astropt.plotting import loss_figure, write_atomic
from astropt.run_dir import RunDir

COLUMNS = ("step", "train_loss", "val_loss", "eval_train_loss", "lr", "tokens_per_s", "mfu", "effective_batch_size")


class RunLog:
    """Rows keyed by step; on resume at step k, rows after k (from a killed run) are dropped."""

    def __init__(self, out_dir: Path, start_step: int):
        self.csv_path = RunDir(out_dir).loss_csv
        self.png_path = RunDir(out_dir).loss_png
        self.rows: dict[int, dict[str, float]] = {}
        if start_step and self.csv_path.is_file():
            with self.csv_path.open() as fh:
                for row in csv.DictReader(fh):
                    step = int(row["step"])
                    if step <= start_step:
                        self.rows[step] = {k: float(v) for k, v in row.items() if k != "step" and v}
        self._flush()

    def add(self, step: int, **values: float) -> None:
        self.rows.setdefault(step, {}).update(values)
        self._flush()

    def series(self, key: str) -> list[tuple[int, float]]:
        return [(s, r[key]) for s, r in sorted(self.rows.items()) if key in r]

    def _flush(self) -> None:
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.csv_path.with_name(".loss.csv.tmp")
        with tmp.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(COLUMNS)
            for step, row in sorted(self.rows.items()):
                writer.writerow([step, *(_fmt(row.get(c)) for c in COLUMNS[1:])])
        tmp.replace(self.csv_path)

    def write_plot(self) -> None:
        png = loss_figure(self.series("train_loss"), self.series("val_loss"), title="AstroPT on AION tokens")
        write_atomic(self.png_path, png)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"
