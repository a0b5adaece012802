"""What an embed job spec may ask (schema and service rules), without a running stack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from jobkinds.kinds.embed import check_embed, prepare_body
from service.jobs.schemas import EMBED_JOB, JobSpec
from state.errors import SpecInvalid
from state.settings import Settings
from state.store import migrate, session_scope


def spec(data: dict | None = None, **section) -> JobSpec:
    return JobSpec.model_validate(
        {
            "kind": "embed",
            "data": data or {"source": "mock", "n_mock": 64},
            "embed": {"model": "shipped", **section},
        }
    )


def refused(job: JobSpec, settings: Settings) -> SpecInvalid:
    with pytest.raises(SpecInvalid) as caught:
        check_embed(job, settings)
    return caught.value


def test_kind_and_section_go_together() -> None:
    with pytest.raises(ValidationError, match="needs an embed section"):
        JobSpec.model_validate({"kind": "embed"})
    with pytest.raises(ValidationError, match="needs kind 'embed'"):
        JobSpec.model_validate({"embed": {"model": "shipped"}})
    with pytest.raises(ValidationError, match="needs kind 'finetune'"):
        JobSpec.model_validate(
            {
                "kind": "embed",
                "embed": {"model": "shipped"},
                "finetune": {"init": "shipped", "labels": ["mag_r"]},
            }
        )
    assert JobSpec.model_validate_json(json.dumps(EMBED_JOB), strict=True).embed.pool == "centre"
    for bad in (
        {"pool": "max"},
        {"centre": 24},
        {"batch_size": 0},
        {"model": {"job": "not hex!"}},
        {"typo": 1},
    ):
        with pytest.raises(ValidationError):
            spec(**bad)


def test_service_rules_name_the_field_and_the_setting(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, max_embed_objects=100, max_embed_batch_size=16)
    check_embed(spec(), settings)
    error = refused(spec(data={"source": "mock", "n_mock": 101}), settings)
    assert error.field == "data.n_mock" and "ASTROPT_MAX_EMBED_OBJECTS" in error.detail
    assert refused(spec(batch_size=17), settings).field == "embed.batch_size"
    assert refused(spec(limit=101), settings).field == "embed.limit"
    assert refused(spec(model={"path": "/etc"}), settings).field == "embed.model.path"
    check_embed(
        spec(data={"source": "hf"}, limit=50, columns=["z_spec"]), settings
    )  # a hub data set, streamed
    assert (
        refused(spec(columns=["mag_r"]), settings).field == "embed.columns"
    )  # mock keeps all its columns
    with pytest.raises(ValidationError):
        spec(data={"source": "hf"}, columns=[""])
    two = JobSpec.model_validate({**EMBED_JOB, "resources": {"procs_per_node": 2}})
    assert refused(two, settings).field == "resources"


def _shipped_layers() -> int:
    from astropt.checkpoints import read_meta
    from astropt.checkpoints.shipped import SHIPPED_MODEL_DIR

    return int(read_meta(SHIPPED_MODEL_DIR)["model_args"]["n_layer"])


def test_the_model_is_resolved_and_its_layers_checked(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, max_embed_objects=50)
    migrate(settings.resolved_database_url)
    with session_scope(settings.resolved_database_url) as session:
        job = spec(layer=-2)
        body = job.model_dump(mode="json")
        prepare_body(session, job, body, settings)
        assert (
            Path(body["embed"]["model_dir"]).name == "shipped_model" and body["max_iters"] == 50
        )  # cut at 50
        n = _shipped_layers()
        beyond = spec(layer=n)
        with pytest.raises(SpecInvalid, match=rf"must be in \[-{n}, {n - 1}\]") as caught:
            prepare_body(session, beyond, beyond.model_dump(mode="json"), settings)
        assert caught.value.field == "embed.layer"
        with pytest.raises(SpecInvalid, match="not found") as caught:
            missing = spec(model={"job": "0123abcd"})
            prepare_body(session, missing, missing.model_dump(mode="json"), settings)
        assert caught.value.field == "embed.model.job"


def test_a_patch_token_model_is_accepted_and_its_layers_checked(tmp_path: Path) -> None:
    import shutil

    from astropt.checkpoints.shipped import SHIPPED_MODEL_DIR

    patch_dir = tmp_path / "data" / "patch-model"
    shutil.copytree(SHIPPED_MODEL_DIR, patch_dir)
    meta = json.loads((patch_dir / "config.json").read_text())
    meta["codec"] = None  # what a patch model's checkpoint records: it has no codec
    (patch_dir / "config.json").write_text(json.dumps(meta))
    settings = Settings(data_dir=tmp_path / "data")
    migrate(settings.resolved_database_url)
    with session_scope(settings.resolved_database_url) as session:
        job = spec(model={"path": str(patch_dir)})
        body = job.model_dump(mode="json")
        prepare_body(session, job, body, settings)
        assert body["embed"]["model_dir"] == str(patch_dir.resolve())
        n = _shipped_layers()
        deep = spec(model={"path": str(patch_dir)}, layer=-n - 1)
        with pytest.raises(SpecInvalid, match=rf"must be in \[-{n}, {n - 1}\]") as caught:
            prepare_body(session, deep, deep.model_dump(mode="json"), settings)
    assert caught.value.field == "embed.layer"


def test_an_embed_job_reads_a_token_data_set_of_its_models_codec(tmp_path: Path) -> None:
    import shutil

    from astropt.checkpoints.shipped import SHIPPED_MODEL_DIR
    from astropt.config import DataSettings
    from astropt.tokens import TokeniseConfig, tokenise

    data_dir = tmp_path / "data"
    tokens = data_dir / "tokens"
    mock = DataSettings(source="mock", n_mock=16, mock_seed=4, path=str(tmp_path / "mock"))
    tokenise(
        TokeniseConfig(data=mock, out_dir=str(tokens), shard_size=16, num_workers=0),
        progress=False,
    )
    other = data_dir / "other-codec-model"
    shutil.copytree(SHIPPED_MODEL_DIR, other)
    meta = json.loads((other / "config.json").read_text())
    shipped_fingerprint = meta["codec"]["fingerprint"]
    meta["codec"] = {**meta["codec"], "spec": "random:1", "fingerprint": "f" * 16}
    (other / "config.json").write_text(json.dumps(meta))
    settings = Settings(data_dir=data_dir, max_embed_objects=50)
    migrate(settings.resolved_database_url)
    with session_scope(settings.resolved_database_url) as session:
        job = spec(data={"source": "tokens", "path": str(tokens)})
        check_embed(job, settings)
        body = job.model_dump(mode="json")
        prepare_body(session, job, body, settings)
        assert body["max_iters"] == 16  # the data set's galaxies, under the cap of 50
        mismatched = spec(
            data={"source": "tokens", "path": str(tokens)}, model={"path": str(other)}
        )
        with pytest.raises(SpecInvalid, match="codec mismatch") as caught:
            prepare_body(session, mismatched, mismatched.model_dump(mode="json"), settings)
    assert caught.value.field == "embed.model"
    assert "f" * 16 in caught.value.detail and shipped_fingerprint in caught.value.detail
