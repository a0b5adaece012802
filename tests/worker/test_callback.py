"""Pruning of periodic checkpoints (the part of the store callback that touches the disk)."""

from __future__ import annotations

from pathlib import Path

from worker.callback import prune_step_checkpoints


def test_prune_keeps_the_newest_step_checkpoints_only(tmp_path: Path) -> None:
    for name in ("best", "last", "step_000005", "step_000010", "step_000100", "step_000020",
                 "step_000030.tmp-x1", "last.old"):
        (tmp_path / name).mkdir()
    removed = prune_step_checkpoints(tmp_path, keep=2)
    assert sorted(removed) == ["step_000005", "step_000010"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best", "last", "last.old", "step_000020", "step_000030.tmp-x1", "step_000100"]
    assert prune_step_checkpoints(tmp_path, keep=0) == []
    assert prune_step_checkpoints(tmp_path, keep=2) == []
