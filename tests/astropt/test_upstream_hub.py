"""import-upstream --hub against a local hub-cache snapshot (offline), and a clear offline error."""

from __future__ import annotations

import argparse

import pytest

from astropt.checkpoints import CheckpointError, load_checkpoint
from astropt.checkpoints.commands import register
from astropt.checkpoints.hub import download_upstream
from tests.astropt.test_upstream_patch_import import upstream_state, write

REPO, COMMIT = "Smith42/astroPT_v2.0", "0123456789abcdef0123456789abcdef01234567"


def snapshot_cache(tmp_path):
    """The hub cache layout: models--owner--name/{refs/main, snapshots/<commit>/<path>}."""
    root = tmp_path / "hub"
    repo = root / "models--Smith42--astroPT_v2.0"
    target = repo / "snapshots" / COMMIT / "astropt" / "095M"
    target.mkdir(parents=True)
    write(target / "ckpt.pt", upstream_state("affine", False), tokeniser="affine")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return root


def test_hub_import_reads_the_local_cache_offline(tmp_path, monkeypatch):
    cache = snapshot_cache(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    path = download_upstream(REPO, "astropt/095M/ckpt.pt", cache_dir=cache)
    assert path.is_file() and COMMIT in str(path)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(
        ["import-upstream", "--hub", REPO, "astropt/095M/ckpt.pt", str(tmp_path / "out")]
    )
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    assert args.func(args) == 0
    model, _ = load_checkpoint(tmp_path / "out")
    assert model.config.tokeniser == "affine"


def test_hub_import_fails_clearly_offline_when_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        CheckpointError, match="not in the local Hugging Face cache.*HF_HUB_OFFLINE"
    ):
        download_upstream(REPO, "astropt/095M/ckpt.pt", cache_dir=tmp_path / "empty")
