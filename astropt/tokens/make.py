"""Making a token data set: ``tokenise(TokeniseConfig(...))``, resumable and split over ranks.

Rank ``r`` of ``w`` writes shards ``part-r-000000.arrow, part-r-000001.arrow, ...``: shard ``i``
holds the rank's rows ``[i * shard_size, (i + 1) * shard_size)`` in order, so a restart skips
the complete shards its progress file lists and starts reading at the first missing row. The
codec runs batched on the device in this process while DataLoader workers decode and crop
the next rows. When every rank has finished, :func:`finalize_manifest` (called by the last rank
to finish, or by a separate final step) merges the ranks' shard lists into ``manifest.json``.
"""

from __future__ import annotations

import multiprocessing
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from astropt.config import DataSettings
from astropt.stopping import StopCheck, raise_if_stopped
from astropt.tokens.format import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    PROGRESS_DIR,
    TokenDatasetError,
    layout,
    progress_name,
    read_json,
    shard_name,
    write_json_atomic,
    write_shard,
)

ProgressCallback = Callable[[int, int | None, float], None]


class TokeniseConfig(BaseModel):
    """What to tokenise, with which codec, into which directory, and this process's part."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    data: DataSettings = Field(
        default_factory=DataSettings,
        description="The source: mock, local or hf "
        "(hf is read as a stream, in order, whatever data.streaming says).",
    )
    codec: str = Field("shipped", description="Codec spec, as TrainConfig.codec.")
    out_dir: str = Field(..., min_length=1, description="The token data set directory.")
    shard_size: int = Field(4096, ge=16, le=1_048_576, description="Galaxies per shard file.")
    batch_size: int = Field(32, ge=1, le=4096, description="Galaxies per codec call.")
    num_workers: int = Field(
        2, ge=0, le=16, description="DataLoader processes decoding and cropping rows (0: this one)."
    )
    device: str = Field(
        "auto", pattern=r"^(auto|cpu|cuda(:\d{1,2})?|mps)$", description="Codec device."
    )
    limit: int | None = Field(
        None, ge=1, description="Stop after this many galaxies (default: the whole source)."
    )
    columns: list[str] = Field(
        default_factory=list,
        max_length=256,
        description="Scalar columns of the source carried along (e.g. mag_r, g_r).",
    )
    rank: int = Field(0, ge=0, description="This process's part (0-based).")
    world_size: int = Field(1, ge=1, le=4096, description="Parts the source is split into.")
    job_id: str | None = Field(None, max_length=200, description="The job that made it (recorded).")

    @model_validator(mode="after")
    def _check(self) -> TokeniseConfig:
        if self.rank >= self.world_size:
            raise ValueError(f"rank ({self.rank}) must be < world_size ({self.world_size})")
        if len(set(self.columns)) != len(self.columns):
            raise ValueError("columns names a column twice")
        bad = [c for c in self.columns if c in ("object_id", "tokens")]
        if bad:
            raise ValueError(f"columns {bad}: object_id and tokens are always stored")
        return self


@dataclass
class TokeniseResult:
    out_dir: str
    n_galaxies: int  # written by this process (resumed shards included)
    n_shards: int
    bytes_on_disk: int
    seconds: float
    galaxies_per_s: float  # galaxies encoded in this call per second (0 when all were done)
    complete: bool = False  # the manifest is written (every rank finished)
    num_workers: int = 0  # DataLoader workers that decoded rows (0 in a daemonic process)


def _key(config: TokeniseConfig, source: dict[str, Any], codec: dict[str, Any]) -> dict[str, Any]:
    """What the shards depend on: a restart with another key must not mix in."""
    return {
        "source": source,
        "codec_fingerprint": codec["fingerprint"],
        "shard_size": config.shard_size,
        "world_size": config.world_size,
        "columns": list(config.columns),
        "limit": config.limit,
        "bands": list(config.data.bands),
        "val_independent": True,
    }


def _resumed_shards(
    out: Path, progress: dict[str, Any] | None, key: dict[str, Any]
) -> list[dict[str, Any]]:
    if progress is None:
        return []
    if progress.get("key") != key:
        raise TokenDatasetError(
            f"{out} holds a token data set made with other settings ({_diff(progress.get('key') or {}, key)}); "
            "use the same settings to resume it, or another out_dir"
        )
    done = []
    for record in progress.get("shards", []):
        file = out / record["file"]
        if not file.is_file() or file.stat().st_size != record["bytes"]:
            break  # from here on the shards are written again
        done.append(record)
    return done


def _diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return ", ".join(f"{k}: {old.get(k)!r} then {new.get(k)!r}" for k in keys) or "unknown"


def tokenise(
    config: TokeniseConfig,
    *,
    progress_callback: ProgressCallback | None = None,
    stop: StopCheck | None = None,
    progress: bool = True,
) -> TokeniseResult:
    """Tokenise this rank's part of ``config.data`` into ``config.out_dir`` (resuming it)."""
    from tqdm.auto import tqdm

    from astropt.codec import load_codec
    from astropt.tokens.rows import Chunks, open_reader
    from astropt.torch_policy import choose_device

    started = time.perf_counter()
    out = Path(config.out_dir).expanduser().resolve()
    reader, source = open_reader(
        config.data,
        rank=config.rank,
        world_size=config.world_size,
        limit=config.limit,
        columns=config.columns,
    )
    codec = load_codec(config.codec, device=choose_device(config.device))
    key = _key(config, source, codec.info.to_dict())
    progress_file = out / progress_name(config.rank)
    record = read_json(progress_file)
    shards = _resumed_shards(out, record, key)
    state: dict[str, Any] = {
        "rank": config.rank,
        "world_size": config.world_size,
        "key": key,
        "codec": codec.info.to_dict(),
        "job_id": config.job_id,
        "shards": shards,
        "complete": False,
    }
    total = reader.count()
    done = sum(s["rows"] for s in shards)
    if (
        record is not None
        and record.get("complete")
        and len(shards) == len(record.get("shards", []))
    ):
        state["complete"] = True
    else:
        write_json_atomic(progress_file, state)
    workers = config.num_workers
    if workers and multiprocessing.current_process().daemon:  # e.g. a Celery prefork child
        warnings.warn(
            f"tokenise: this process is daemonic and cannot start the {workers} DataLoader "
            "workers asked for; rows are decoded in this process (num_workers=0)",
            stacklevel=2,
        )
        workers = 0
    encoded = 0
    ids: list[str] = []
    tokens: list[np.ndarray] = []
    cols: dict[str, list[Any]] = {c: [] for c in config.columns}
    bar = tqdm(
        total=total, initial=done, desc="tokenising", unit="gal", disable=not progress, leave=False
    )

    def flush(final: bool) -> None:
        nonlocal ids, tokens, cols
        while len(ids) >= config.shard_size or (final and ids):
            n = min(len(ids), config.shard_size)
            block = np.concatenate(tokens)
            meta = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "rank": config.rank,
                "index": len(state["shards"]),
                "codec_fingerprint": codec.info.fingerprint,
            }
            shard = write_shard(
                out,
                shard_name(config.rank, len(state["shards"])),
                ids[:n],
                block[:n],
                {c: np.asarray(v[:n]) for c, v in cols.items()},
                meta,
            )
            state["shards"].append({**shard, "rank": config.rank, "index": meta["index"]})
            write_json_atomic(progress_file, state)
            ids, tokens = ids[n:], [block[n:]] if n < len(block) else []
            cols = {c: v[n:] for c, v in cols.items()}

    try:
        if not state["complete"]:
            loader = torch.utils.data.DataLoader(
                Chunks(reader, done, config.batch_size, reader.count()),
                batch_size=None,
                num_workers=workers,
                prefetch_factor=4 if workers else None,
            )
            t0 = time.perf_counter()
            for batch_ids, crops, scalars in loader:
                raise_if_stopped(stop, "tokenising")
                tokens.append(codec.encode(crops, config.data.bands).numpy().astype(np.int16))
                ids.extend(batch_ids)
                for c in config.columns:
                    cols[c].extend(scalars[c])
                encoded += len(batch_ids)
                flush(final=False)
                bar.update(len(batch_ids))
                if progress_callback is not None:
                    progress_callback(
                        done + encoded, total, encoded / max(time.perf_counter() - t0, 1e-9)
                    )
            flush(final=True)
            state["complete"] = True
            write_json_atomic(progress_file, state)
    finally:
        bar.close()
    finished = finalize_manifest(out, job_id=config.job_id) is not None
    seconds = time.perf_counter() - started
    return TokeniseResult(
        str(out),
        sum(s["rows"] for s in state["shards"]),
        len(state["shards"]),
        sum(s["bytes"] for s in state["shards"]),
        seconds,
        encoded / max(seconds, 1e-9),
        finished,
        workers,
    )


def finalize_manifest(out_dir: str | Path, *, job_id: str | None = None) -> dict[str, Any] | None:
    """Write ``manifest.json`` once every rank has finished; the manifest, or None while a rank
    is still working. Safe to call from every rank (a file lock serialises them)."""
    from filelock import FileLock

    out = Path(out_dir).expanduser().resolve()
    with FileLock(str(out / ".manifest.lock")):
        existing = read_json(out / MANIFEST)
        read = [read_json(p) for p in sorted((out / PROGRESS_DIR).glob("rank-*.json"))]
        records = [r for r in read if r]
        if not records:
            return existing
        world = records[0]["world_size"]
        by_rank = {r["rank"]: r for r in records if r.get("world_size") == world}
        if sorted(by_rank) != list(range(world)) or not all(
            r["complete"] for r in by_rank.values()
        ):
            return None
        keys = {repr(r["key"]) for r in by_rank.values()}
        if len(keys) != 1:
            raise TokenDatasetError(f"{out}: the ranks' progress files disagree on the settings")
        first = by_rank[0]
        shards = [s for r in range(world) for s in by_rank[r]["shards"]]
        if existing and [s["sha256"] for s in existing.get("shards", [])] == [
            s["sha256"] for s in shards
        ]:
            return existing
        key = first["key"]
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "job_id": job_id if job_id is not None else first.get("job_id"),
            "codec": first["codec"],
            "source": key["source"],
            "layout": layout(),
            "columns": list(key["columns"]),
            "bands": key["bands"],
            "limit": key["limit"],
            "shard_size": key["shard_size"],
            "world_size": world,
            "n_galaxies": sum(s["rows"] for s in shards),
            "n_shards": len(shards),
            "bytes": sum(s["bytes"] for s in shards),
            "shards": [
                {k: s[k] for k in ("file", "rows", "bytes", "sha256", "rank", "index")}
                for s in shards
            ],
        }
        write_json_atomic(out / MANIFEST, manifest)
        return manifest
