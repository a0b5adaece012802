"""``data.source: tokens`` in a job: the token data set it names (``data.path`` inside the data
roots, or ``data.job_id`` of a completed tokenise job), checked at submission: it is complete
and readable, and its codec is the run's (a 422 naming both fingerprints when not)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from astropt.run_dir import RunDir
from jobkinds.spec import JobSpec
from state.errors import SpecInvalid
from state.store import repository

LAST_USED = ".last_used"  # touched in a token data set whenever a job is submitted to read it


def mark_used(directory: Path) -> None:
    """Record that a job reads this token data set (GET /datasets shows it as last use)."""
    with contextlib.suppress(OSError):  # a read-only data root: the listing shows no last use
        (directory / LAST_USED).touch()


# Kinds that read a token data set (the others refuse data.source tokens with a 422).
READS_TOKENS = ("train", "finetune", "embed")


def resolve_tokens_source(session: Session, spec: JobSpec) -> JobSpec:
    """The spec with ``data.path`` set from ``data.job_id`` (a value sent for path is replaced)."""
    data = spec.data
    if data.source != "tokens":
        return spec
    if spec.kind not in READS_TOKENS:
        raise SpecInvalid(
            "data.source",
            f"a {spec.kind} job cannot read a token data set yet "
            f"(kinds that can: {', '.join(READS_TOKENS)}); give it the images",
        )
    if data.job_id is None:
        return spec
    job = repository.get_job(session, data.job_id)
    if job is None or job.kind != "tokenise":
        raise SpecInvalid("data.job_id", f"data.job_id: no tokenise job {data.job_id}")
    if job.phase != "completed":
        raise SpecInvalid(
            "data.job_id",
            f"data.job_id: tokenise job {data.job_id} is {job.phase}; its "
            "data set is ready once it has completed",
        )
    path = str(RunDir(Path(job.out_dir)).tokens)
    return spec.model_copy(update={"data": data.model_copy(update={"path": path})})


def check_tokens_source(spec: JobSpec) -> None:
    """The data set is complete (its manifest and shard sizes; checksums are the worker's) and
    tokenised with the run's codec."""
    if spec.data.source != "tokens" or spec.data.path is None:
        return
    from astropt.codec import CodecError
    from astropt.tokens import TokenDatasetError, open_token_dataset
    from astropt.tokens.splits import check_run_codec

    try:
        dataset = open_token_dataset(Path(spec.data.path), verify=False)
    except TokenDatasetError as exc:
        raise SpecInvalid("data.path", f"data.path: {exc}") from exc
    try:
        check_run_codec(dataset, spec.codec)
        mark_used(Path(spec.data.path))
    except CodecError as exc:
        raise SpecInvalid("codec", str(exc)) from exc
    finally:
        dataset.close()


def tokens_read_by_model(path: str, meta: dict[str, Any], field: str) -> int:
    """The galaxies of the token data set at ``path``, which the checkpoint of ``meta`` (named
    by ``field``) must be able to read: an AION-token model of the data set's codec."""
    from astropt.tokens import TokenDatasetError, open_token_dataset

    try:
        dataset = open_token_dataset(Path(path), verify=False)
    except TokenDatasetError as exc:
        raise SpecInvalid("data.path", f"data.path: {exc}") from exc
    try:
        codec = meta.get("codec") or {}
        if not codec.get("fingerprint"):
            raise SpecInvalid(
                field,
                f"{field} reads flux patches, not codec tokens: a token data set can only be "
                "read by an AION-token model of its codec; give this model the images",
            )
        if codec["fingerprint"] != dataset.codec_fingerprint:
            raise SpecInvalid(
                field,
                f"codec mismatch: {field} reads tokens of codec {codec.get('spec')!r} "
                f"(fingerprint {codec['fingerprint']}) but {path} was tokenised with codec "
                f"{dataset.codec.get('spec')!r} (fingerprint {dataset.codec_fingerprint}); "
                "use a model trained with the data set's codec, or tokenise the data again",
            )
        return len(dataset)
    finally:
        dataset.close()
