"""loss.csv is appended (one row per logged step) and stays exact across resumes."""

from __future__ import annotations

import csv
from pathlib import Path

from astropt.training.run_log import RunLog


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _attempt(out: Path, start: int, stop: int, eval_every: int = 10) -> RunLog:
    log = RunLog(out, start)
    if start == 0:
        log.add(0, val_loss=9.5, eval_train_loss=9.6)
    for step in range(start + 1, stop + 1):
        log.add(step, train_loss=10.0 - step / 100, lr=1e-3)
        if step % eval_every == 0:
            log.add(step, val_loss=9.0 - step / 100, eval_train_loss=9.1 - step / 100)
    return log


def test_every_row_once_after_a_resume(tmp_path: Path) -> None:
    _attempt(tmp_path, 0, 27)  # killed after step 27; its last checkpoint was step 20
    log = _attempt(tmp_path, 20, 40)  # resumes from step 20 and re-runs 21..27
    rows = _rows(tmp_path / "loss.csv")
    assert [int(r["step"]) for r in rows] == list(range(0, 41))  # every step once, in order
    evaluated = [int(r["step"]) for r in rows if r["val_loss"]]
    assert evaluated == [0, 10, 20, 30, 40]
    assert all(
        r["train_loss"] for r in rows if int(r["step"]) > 0
    )  # a step's eval merged into its row
    assert float(rows[25]["train_loss"]) == 10.0 - 25 / 100
    assert [s for s, _ in log.series("val_loss")] == evaluated
    assert len(log.series("train_loss")) == 40


def test_a_log_step_appends_rather_than_rewrites(tmp_path: Path) -> None:
    log = _attempt(tmp_path, 0, 5000, eval_every=1000)
    path = tmp_path / "loss.csv"
    inode, before = path.stat().st_ino, path.read_bytes()
    log.add(5001, train_loss=1.0)
    log.add(5001, val_loss=2.0)  # the same step's evaluation rewrites only that row
    after = path.read_bytes()
    assert path.stat().st_ino == inode  # not replaced by a rewritten copy
    assert after.startswith(before) and after[len(before) :].decode().strip() == "5001,1,2,,,,,"
