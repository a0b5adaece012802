"""The run-directory layout: pruning of periodic checkpoints, best-else-last, the resume step."""

from __future__ import annotations

from pathlib import Path

from astropt.run_dir import RunDir, prune_step_checkpoints


def test_prune_keeps_the_newest_step_checkpoints_only(tmp_path: Path) -> None:
    for name in (
        "best",
        "last",
        "step_000005",
        "step_000010",
        "step_000100",
        "step_000020",
        "step_000030.tmp-x1",
        "last.old",
    ):
        (tmp_path / name).mkdir()
    removed = prune_step_checkpoints(tmp_path, keep=2)
    assert sorted(removed) == ["step_000005", "step_000010"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best",
        "last",
        "last.old",
        "step_000020",
        "step_000030.tmp-x1",
        "step_000100",
    ]
    assert prune_step_checkpoints(tmp_path, keep=0) == []
    assert prune_step_checkpoints(tmp_path, keep=2) == []


def test_best_else_last_and_the_resume_step(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.best_or_last() is None and run.last_step() is None
    run.checkpoint("last").mkdir(parents=True)
    (run.checkpoint("last") / "model.safetensors").write_bytes(b"x")
    (run.checkpoint("last") / "config.json").write_text('{"step": 40}')
    assert run.best_or_last() == tmp_path / "checkpoints" / "last" and run.last_step() == 40
    run.checkpoint("best").mkdir()
    assert run.best_or_last() == run.checkpoint("last")  # best has no weights yet
    (run.checkpoint("best") / "model.safetensors").write_bytes(b"x")
    assert run.best_or_last() == tmp_path / "checkpoints" / "best"
    assert run.val_image(20) == tmp_path / "val_images" / "step_000020.png"
