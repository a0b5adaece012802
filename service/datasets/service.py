"""Listing and deleting the data sets the service made (see :mod:`service.datasets`)."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from jobkinds.disk import directory_bytes, used_bytes
from jobkinds.kinds.tokenise import tokens_dir
from jobkinds.tokens_source import LAST_USED
from service.datasets.schemas import DatasetList, DatasetOut
from state.errors import Conflict, NotFound
from state.settings import Settings
from state.store import repository
from state.store.models import ACTIVE_PHASES

DATASET_ID = re.compile(r"^(tokens|cache|stream|mock)-([A-Za-z0-9_.-]{1,128})$")
STREAMS = "streams"  # the token cache's folder of write-through data sets (astropt.tokens.cache)


def _when(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def _manifest(directory: Path) -> dict[str, Any] | None:
    try:
        return json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def _last_used(directory: Path) -> datetime | None:
    marker = directory / LAST_USED
    return _when(marker) if marker.is_file() else None


def _token_set(job_id: str, directory: Path) -> DatasetOut:
    manifest = _manifest(directory) or {}
    codec = manifest.get("codec")
    return DatasetOut(
        id=f"tokens-{job_id}",
        kind="tokens",
        path=str(directory),
        bytes=directory_bytes(directory),
        n_galaxies=manifest.get("n_galaxies"),
        source=manifest.get("source"),
        codec=codec.get("fingerprint") if isinstance(codec, dict) else codec,
        job_id=job_id,
        complete=bool(manifest),
        modified_at=_when(directory),
        last_used_at=_last_used(directory),
    )


def _owned_dirs(settings: Settings) -> dict[str, Path]:
    tokens = settings.data_dir.resolve() / "tokens"
    return {
        "cache": tokens,
        "stream": tokens / STREAMS,
        "mock": settings.data_dir.resolve() / "mock",
    }


def _plain_children(root: Path) -> list[Path]:
    if not root.is_dir() or root.is_symlink():
        return []
    return sorted(p for p in root.iterdir() if not p.is_symlink() and not p.name.endswith(".lock"))


def _cache_set(dataset_id: str, directory: Path) -> DatasetOut:
    manifest = _manifest(directory) or {}
    codec = manifest.get("codec")
    return DatasetOut(
        id=dataset_id,
        kind="token_cache",
        path=str(directory),
        bytes=directory_bytes(directory),
        n_galaxies=manifest.get("n_galaxies"),
        source=manifest.get("source"),
        codec=codec.get("fingerprint") if isinstance(codec, dict) else codec,
        complete=bool(manifest),
        modified_at=_when(directory),
        last_used_at=_last_used(directory),
    )


def list_datasets(session: Session, settings: Settings) -> DatasetList:
    items: list[DatasetOut] = []
    for job in repository.jobs_of_kind(session, "tokenise"):
        directory = tokens_dir(job.out_dir)
        if directory.is_dir():
            items.append(_token_set(job.id, directory))
    owned = _owned_dirs(settings)
    for path in _plain_children(owned["stream"]):  # write-through data sets of streamed sources
        if path.is_dir():
            items.append(_cache_set(f"stream-{path.name}", path))
    for path in _plain_children(owned["cache"]):
        if path.name == STREAMS:
            continue
        manifest = _manifest(path) if path.is_dir() else None
        size = directory_bytes(path) if path.is_dir() else path.stat().st_size
        items.append(
            DatasetOut(
                id=f"cache-{path.name}",
                kind="token_cache",
                path=str(path),
                bytes=size,
                n_galaxies=(manifest or {}).get("n_galaxies"),
                source=(manifest or {}).get("source"),
                codec=path.stem.rsplit("-", 1)[-1]
                if manifest is None
                else (manifest.get("codec") or {}).get("fingerprint"),
                complete=True,
                modified_at=_when(path),
                last_used_at=None,
            )
        )
    for path in _plain_children(owned["mock"]):
        if not path.is_dir():
            continue
        manifest = _manifest(path) or {}
        items.append(
            DatasetOut(
                id=f"mock-{path.name}",
                kind="mock",
                path=str(path),
                bytes=directory_bytes(path),
                n_galaxies=manifest.get("n"),
                source={"kind": "mock", **{k: manifest[k] for k in ("n", "seed") if k in manifest}},
                complete=bool(manifest),
                modified_at=_when(path),
            )
        )
    budget = int(settings.disk_budget_gb * 2**30) if settings.disk_budget_gb else None
    return DatasetList(
        items=items,
        total_bytes=sum(i.bytes for i in items),
        budget_bytes=budget,
        used_bytes=used_bytes(settings.data_dir, fresh=True),
    )


def _resolve(session: Session, settings: Settings, dataset_id: str) -> Path:
    """The path of a data set this service made; 404 for anything else."""
    match = DATASET_ID.match(dataset_id)
    if not match:
        raise NotFound(
            f"no data set {dataset_id!r}: ids are tokens-<job>, cache-<name>, stream-<name> or mock-<name>"
        )
    kind, name = match.groups()
    if kind == "tokens":
        job = repository.get_job(session, name) if re.fullmatch(r"[0-9a-f]{1,32}", name) else None
        if job is None or job.kind != "tokenise":
            raise NotFound(f"no token data set of a tokenise job {name}")
        if job.phase in ACTIVE_PHASES:
            raise Conflict(
                f"tokenise job {name} is {job.phase}; cancel it before deleting its data set"
            )
        path = tokens_dir(job.out_dir)
        root = Path(job.out_dir).resolve()
    else:
        root = _owned_dirs(settings)[kind]
        path = root / name
    if path.is_symlink() or not path.exists() or not path.resolve().is_relative_to(root):
        raise NotFound(f"data set {dataset_id} does not exist")
    return path


def delete_dataset(session: Session, settings: Settings, dataset_id: str) -> None:
    path = _resolve(session, settings, dataset_id)
    users = [job.id for job in repository.active_jobs(session) if _names(job.spec, path)]
    if users:
        raise Conflict(
            f"data set {dataset_id} is read by queued or running jobs {', '.join(users)}"
        )
    try:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError as exc:  # a concurrent DELETE got there first
        raise NotFound(f"data set {dataset_id} does not exist") from exc


def _names(spec: dict[str, Any] | None, path: Path) -> bool:
    data = (spec or {}).get("data") or {}
    named = data.get("path")
    return bool(named) and Path(named).expanduser().resolve() == path.resolve()
