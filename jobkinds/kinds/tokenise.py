"""``kind: tokenise``: a data set through the codec, once, into a token data set in the job's
directory (``<out_dir>/tokens``) that later train, fine-tune and embed jobs read with
``data.source: tokens``. A restart continues after the last complete shard."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from astropt.run_dir import RunDir
from astropt.tokens import estimate_bytes
from jobkinds.base import JobKind, ResumeFrom, Runner
from jobkinds.disk import mock_bytes
from jobkinds.spec import JobSpec
from state.errors import SpecInvalid
from state.settings import Settings


def tokens_dir(out_dir: str | Path) -> Path:
    """Where a tokenise job writes its data set (the run directory's layout owns the name)."""
    return RunDir(Path(out_dir)).tokens


def expected_count(spec: JobSpec, settings: Settings) -> int:
    """Galaxies the job will write at most (the progress bar's end; the disk budget's count)."""
    assert spec.tokenise is not None
    cap = min(spec.tokenise.limit or settings.max_tokenise_objects, settings.max_tokenise_objects)
    return min(spec.data.n_mock, cap) if spec.data.source == "mock" else cap


class TokeniseKind(JobKind):
    name = "tokenise"
    runner: ClassVar[Runner] = "tokenise"
    resume_from: ClassVar[ResumeFrom] = "shards"
    single_process = False  # resources ranks (and Slurm nodes) take disjoint parts of the source

    def check(self, spec: JobSpec, settings: Settings) -> None:
        super().check(spec, settings)
        section = spec.tokenise
        assert section is not None
        if spec.data.source == "tokens":
            raise SpecInvalid(
                "data.source", "a tokenise job reads images (mock, local or hf), not tokens"
            )
        if spec.model.tokeniser != "aion":
            raise SpecInvalid(
                "model.tokeniser",
                "a token data set holds AION codec tokens: leave model.tokeniser at 'aion'",
            )
        if (section.limit or 0) > settings.max_tokenise_objects:
            raise SpecInvalid(
                "tokenise.limit",
                f"tokenise.limit ({section.limit}) exceeds this service's "
                f"limit of {settings.max_tokenise_objects} (setting ASTROPT_MAX_TOKENISE_OBJECTS)",
            )

    def output_bytes(self, spec: JobSpec, settings: Settings) -> int:
        assert spec.tokenise is not None
        return mock_bytes(spec) + estimate_bytes(
            expected_count(spec, settings), len(spec.tokenise.columns)
        )

    def prepare(
        self, session: Session, spec: JobSpec, body: dict[str, Any], settings: Settings
    ) -> None:
        body["max_iters"] = expected_count(spec, settings)

    def library_config(self, spec: JobSpec, out_dir: str, settings: Settings) -> Any:
        from astropt.tokens import TokeniseConfig

        section = spec.tokenise
        assert section is not None
        limit = min(section.limit or settings.max_tokenise_objects, settings.max_tokenise_objects)
        return TokeniseConfig(
            data=spec.data,
            codec=spec.codec,
            out_dir=str(tokens_dir(out_dir)),
            shard_size=section.shard_size,
            batch_size=section.batch_size,
            num_workers=section.num_workers,
            device=spec.device,
            limit=limit,
            columns=list(section.columns),
            job_id=Path(out_dir).name,
        )
