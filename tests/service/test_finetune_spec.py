"""What a fine-tune job spec may ask (schema and service rules), without a running stack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from jobkinds.kinds.finetune import check_finetune
from service.jobs.schemas import FINETUNE_JOB, JobSpec
from state.errors import SpecInvalid
from state.settings import Settings


def spec(**section) -> JobSpec:
    body = {"init": "shipped", "labels": ["mag_r"], **section}
    return JobSpec.model_validate({"kind": "finetune", "finetune": body})


def refused(job: JobSpec, settings: Settings) -> SpecInvalid:
    with pytest.raises(SpecInvalid) as caught:
        check_finetune(job, settings)
    return caught.value


def test_kind_and_section_go_together() -> None:
    with pytest.raises(ValidationError, match="needs a finetune section"):
        JobSpec.model_validate({"kind": "finetune"})
    with pytest.raises(ValidationError, match="needs kind 'finetune'"):
        JobSpec.model_validate({"finetune": {"init": "shipped", "labels": ["mag_r"]}})
    assert JobSpec.model_validate({}).kind == "train"
    # The documented example passes the strict JSON parsing POST /jobs applies.
    assert (
        JobSpec.model_validate_json(json.dumps(FINETUNE_JOB), strict=True).finetune.mode == "lora"
    )
    with pytest.raises(ValidationError):
        spec(init={"job": "not hex!"})
    with pytest.raises(ValidationError):
        spec(mode="qlora")


def test_service_rules_name_the_field(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, max_iters_limit=300)
    check_finetune(spec(), settings)
    assert refused(spec(steps=301), settings).field == "finetune.steps"
    assert refused(spec(init={"path": "/etc"}), settings).field == "finetune.init.path"
    assert refused(spec(label_table="/etc/labels.csv"), settings).field == "finetune.label_table"
    two = JobSpec.model_validate(
        {
            "kind": "finetune",
            "resources": {"procs_per_node": 2},
            "finetune": {"init": "shipped", "labels": ["mag_r"]},
        }
    )
    assert refused(two, settings).field == "resources"
    error = refused(spec(labels=["mag_r", "redshift"]), settings)
    assert (
        error.field == "finetune.labels"
        and "redshift" in error.detail
        and "disk_hlr_arcsec" in error.detail
    )


def test_a_label_table_offers_its_columns(tmp_path: Path) -> None:
    table = tmp_path / "labels.csv"
    table.write_text("object_id,redshift,morphology\nmock-s0-00000000,0.1,spiral\n")
    settings = Settings(data_dir=tmp_path)
    check_finetune(spec(label_table=str(table), labels=["redshift"]), settings)
    error = refused(spec(label_table=str(table), labels=["mag_r"]), settings)
    assert "valid labels: redshift, morphology" in error.detail
    (tmp_path / "bad.csv").write_text("id,redshift\nx,1\n")
    assert (
        "no 'object_id' column"
        in refused(
            spec(label_table=str(tmp_path / "bad.csv"), labels=["redshift"]), settings
        ).detail
    )


def test_a_token_data_set_offers_its_columns_and_must_be_of_the_models_codec(
    tmp_path: Path,
) -> None:
    from astropt.config import DataSettings
    from astropt.tokens import TokeniseConfig, tokenise
    from jobkinds.kinds.finetune import prepare_body
    from state.store import migrate, session_scope

    data_dir = tmp_path / "data"
    tokens = data_dir / "tokens"
    mock = DataSettings(source="mock", n_mock=16, mock_seed=4, path=str(tmp_path / "mock"))
    tokenise(
        TokeniseConfig(
            data=mock, out_dir=str(tokens), shard_size=16, num_workers=0, columns=["mag_r"]
        ),
        progress=False,
    )
    settings = Settings(data_dir=data_dir)

    def on_tokens(labels: list[str]) -> JobSpec:
        return JobSpec.model_validate(
            {
                "kind": "finetune",
                "data": {"source": "tokens", "path": str(tokens)},
                "finetune": {"init": "shipped", "labels": labels},
            }
        )

    check_finetune(on_tokens(["mag_r"]), settings)
    error = refused(on_tokens(["bulge_fraction"]), settings)
    assert error.field == "finetune.labels" and "columns of the token data set" in error.detail
    assert "mag_r" in error.detail  # names what it offers
    migrate(settings.resolved_database_url)
    with session_scope(settings.resolved_database_url) as session:
        job = on_tokens(["mag_r"])
        body = job.model_dump(mode="json")
        prepare_body(session, job, body)  # the shipped model reads the shipped codec's tokens
        assert body["finetune"]["init_dir"].endswith("shipped_model")
