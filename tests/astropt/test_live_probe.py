"""Live probes during training and probes of every checkpoint of a run."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import get_args

import matplotlib.image as mpimg
import numpy as np
import pytest
from pydantic import ValidationError

from astropt.config import LiveProbeSettings, TrainConfig
from astropt.data.mock import object_id, simulate_galaxy
from astropt.data.samples import DataSourceError
from astropt.plotting import loss_figure
from astropt.pooling import POOLS
from astropt.science.checkpoint_probes import JSON_NAME, PNG_NAME, probe_checkpoints, write_report
from astropt.science.embedding import EmbedOptions, embed_flux, load_embed_model
from astropt.science.model_probe import select_labels
from astropt.science.probe import ridge_cv
from astropt.science.sources import SourceSpec
from astropt.training import TrainCallback, train
from tests.astropt.test_train import read_train_losses, tiny_config

pytestmark = pytest.mark.slow  # trains real models with probes (minutes on 2 cores)

LABELS = ["mag_r", "g_r", "disk_hlr_arcsec"]
PROBE = {"labels": LABELS, "n_galaxies": 16, "folds": 3}


class Evals(TrainCallback):
    def __init__(self) -> None:
        self.evals: list[tuple[int, dict[str, float]]] = []

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        self.evals.append((step, dict(metrics)))


def _config(tmp_path: Path, name: str, **overrides) -> TrainConfig:
    # dropout 0.1 (tiny_config): any draw of the probe from torch's generator would show in the losses
    cfg = tiny_config(
        tmp_path, data__n_mock=48, data__val_fraction=0.4, checkpoint_interval=8, **overrides
    )
    return cfg.model_copy(update={"out_dir": str(tmp_path / name)})


def test_live_probe_curves_at_each_eval_same_losses_then_probe_every_checkpoint(
    tmp_path: Path,
) -> None:
    plain, probed = Evals(), Evals()
    assert train(_config(tmp_path, "plain"), [plain], resume=False).status == "completed"
    cfg = _config(tmp_path, "probed", live_probe=PROBE)
    assert train(cfg, [probed], resume=False).status == "completed"

    # the probe leaves training exactly as it was: same train losses, same evaluations
    assert read_train_losses(tmp_path / "probed") == read_train_losses(tmp_path / "plain")
    assert [(s, m["val_loss"]) for s, m in probed.evals] == [
        (s, m["val_loss"]) for s, m in plain.evals
    ]
    assert not any(k.startswith("probe_r2/") for _, m in plain.evals for k in m)

    assert [s for s, _ in probed.evals] == [0, 8, 16]  # every evaluation, the untrained one too
    for _, metrics in probed.evals:
        r2 = {
            k.removeprefix("probe_r2/"): v for k, v in metrics.items() if k.startswith("probe_r2/")
        }
        assert set(r2) == set(LABELS)
        assert all(math.isfinite(v) and v <= 1.0 for v in r2.values()), r2
        assert metrics["probe_time_s"] > 0
    # the probe sees the model change: R^2 of the trained model differs from the untrained one
    assert probed.evals[0][1]["probe_r2/mag_r"] != probed.evals[-1][1]["probe_r2/mag_r"]

    with (tmp_path / "probed" / "loss.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    logged = {int(r["step"]): float(r["probe_r2/g_r"]) for r in rows if r["probe_r2/g_r"]}
    assert logged == pytest.approx({s: m["probe_r2/g_r"] for s, m in probed.evals}, abs=1e-5)
    assert _png_height((tmp_path / "probed" / "loss.png").read_bytes()) > _png_height(
        (tmp_path / "plain" / "loss.png").read_bytes()
    )

    # every saved checkpoint (step_000008, step_000016 = last) probed on a fixed mock set
    report = probe_checkpoints(
        tmp_path / "probed",
        LABELS,
        SourceSpec("mock", n=24, seed=5, path=str(tmp_path / "m5")),
        folds=3,
        random_init=0,
    )
    assert [(r.checkpoint, r.step) for r in report.rows] == [
        ("step_000008", 8),
        ("step_000016", 16),
    ]
    assert report.random_init is not None and report.random_init.step is None
    for row in [*report.rows, report.random_init]:
        assert set(row.scores) == set(LABELS)
        assert all(s is not None and s.n == 24 and s.r2_mean <= 1.0 for s in row.scores.values())
    assert report.rows[0].r2("mag_r") != report.rows[1].r2("mag_r")
    json_path, png_path = write_report(report, tmp_path / "out")
    saved = json.loads(json_path.read_text())
    assert [r["step"] for r in saved["rows"]] == [8, 16] and saved["labels"] == LABELS
    assert saved["rows"][1]["scores"]["g_r"]["r2_mean"] == pytest.approx(report.rows[1].r2("g_r"))
    assert png_path.read_bytes()[:4] == b"\x89PNG" and (json_path.name, png_path.name) == (
        JSON_NAME,
        PNG_NAME,
    )


def _truth_labels(params: dict[str, float]) -> dict[str, float]:
    """LABELS straight from the mock's truth (g_r from the total band fluxes, as a survey measures it)."""
    return {
        "mag_r": params["mag_r"],
        "g_r": -2.5 * math.log10(params["flux_g"] / params["flux_r"]),
        "disk_hlr_arcsec": params["disk_hlr_arcsec"],
    }


def test_live_probe_r2_equals_an_independent_probe_of_the_final_checkpoint(tmp_path: Path) -> None:
    """The live probe's labels belong to the galaxies it embeds: its last R^2 per label is what
    the public science path gives for the same galaxies, found by object id from the run's data
    manifest, embedded from the final checkpoint and labelled from the mock's truth."""
    evals = Evals()
    cfg = _config(tmp_path, "run", live_probe=PROBE, max_iters=8, n_val_images=0)
    assert train(cfg, [evals], resume=False).status == "completed"
    step, metrics = evals.evals[-1]
    assert step == 8

    # the probe set: the first n_galaxies of the validation split, in row order; the validation
    # split is every mock galaxy the manifest does not list as trained on
    trained = set(json.loads((tmp_path / "run" / "data_rank0.json").read_text())["object_ids"])
    seed, settings = cfg.data.mock_seed, cfg.live_probe
    assert settings is not None
    val_rows = [i for i in range(cfg.data.n_mock) if object_id(seed, i) not in trained]
    rows = val_rows[: settings.n_galaxies]
    assert len(rows) == settings.n_galaxies and len(trained) == cfg.data.n_mock - len(val_rows)

    galaxies = [simulate_galaxy(seed, i) for i in rows]
    em = load_embed_model(tmp_path / "run" / "checkpoints" / "last")
    assert em.meta["step"] == step
    x = embed_flux(
        em,
        np.stack([g["flux"] for g in galaxies]),
        EmbedOptions(pool=settings.pool, layer=settings.layer, batch_size=len(rows)),
    )
    truth = [_truth_labels(g["params"]) for g in galaxies]
    for label in LABELS:
        y = np.array([t[label] for t in truth])
        reference = ridge_cv(x, y, folds=settings.folds, alpha=settings.alpha, seed=cfg.seed)
        # same weights, tokens, rows, folds and seed: the same embeddings bit for bit; only g_r's
        # label arithmetic (log of a ratio here, a difference of magnitudes there) differs, ~1e-15
        assert metrics[f"probe_r2/{label}"] == pytest.approx(reference.r2_mean, abs=1e-9), label
    # a probe of the same embeddings with the labels one galaxy out of step reads something else
    y = np.array([t["mag_r"] for t in truth])
    shifted = ridge_cv(x, np.roll(y, 1), folds=settings.folds, alpha=settings.alpha, seed=cfg.seed)
    assert abs(shifted.r2_mean - metrics["probe_r2/mag_r"]) > 1e-3


def _png_height(png: bytes) -> int:
    return mpimg.imread(io.BytesIO(png), format="png").shape[0]


def test_loss_png_gets_a_probe_panel_only_with_probe_points() -> None:
    train_points = [(s, 9.0 - s / 10) for s in range(1, 21)]
    val = [(0, 9.2), (10, 8.0), (20, 7.5)]
    plain = loss_figure(train_points, val)
    empty = loss_figure(train_points, val, probes={"mag_r": []})
    with_probe = loss_figure(
        train_points,
        val,
        probes={
            "mag_r": [(0, 0.1), (10, 0.5), (20, 0.7)],
            "g_r": [(0, -3.0), (10, 0.0), (20, 0.2)],
        },
    )
    assert _png_height(empty) == _png_height(plain) == 400
    assert _png_height(with_probe) == 650  # a second panel below the losses


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"live_probe": {"n_galaxies": 12, "folds": 7}}, "at least 2 x folds"),
        ({"live_probe": {"labels": ["mag_r", "mag_r"]}}, "names a label twice"),
        ({"live_probe": {"labels": ["probe label"]}}, "['probe label']: a label is a column name"),
        ({"live_probe": {"layer": 4}}, "live_probe.layer (4) must be in [-1, 0]"),
        ({"live_probe": {}, "data": {"source": "hf"}}, "finite table"),
        ({"live_probe": {}, "data": {"cache_tokens": False}}, "set data.cache_tokens true"),
    ],
)
def test_bad_live_probe_settings_fail_at_construction(overrides: dict, message: str) -> None:
    raw = {"model": {"n_layer": 1, "n_head": 2, "n_embd": 32}, **overrides}
    with pytest.raises(ValidationError, match=re.escape(message)):
        TrainConfig.model_validate(raw)


def test_live_probe_defaults_and_pool_choices() -> None:
    settings = TrainConfig.model_validate({"live_probe": {}}).live_probe
    assert settings is not None and settings.labels == [
        "mag_r",
        "g_r",
        "disk_hlr_arcsec",
        "disk_q",
        "bulge_fraction",
    ]
    assert TrainConfig().live_probe is None  # off unless asked for
    assert get_args(LiveProbeSettings.model_fields["pool"].annotation) == POOLS


def test_a_label_the_source_lacks_is_named_with_the_choices() -> None:
    columns = {"mag_r": np.array([20.0, 21.0]), "band": np.array(["g", "r"])}
    assert select_labels(columns, ["mag_r"], [1])["mag_r"].tolist() == [21.0]
    with pytest.raises(DataSourceError, match=r"\['colour'\] are not columns .* has \['mag_r'\]"):
        select_labels(columns, ["colour"], [0])
    with pytest.raises(DataSourceError, match="not numeric"):
        select_labels(columns, ["band"], [0])


def test_ridge_holdout_keeps_the_target_shape_and_reads_a_planted_signal() -> None:
    from astropt.science.probe import r2_score, ridge_holdout

    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 8))
    y = x @ rng.normal(size=8) + 0.1 * rng.normal(size=200)
    train_rows, val_rows, test_rows = np.arange(120), np.arange(120, 160), np.arange(160, 200)
    flat, alpha = ridge_holdout(x, y, train_rows, val_rows)
    column, same = ridge_holdout(x, y[:, None], train_rows, val_rows)
    assert flat.shape == (200,) and column.shape == (200, 1) and alpha == same
    assert r2_score(y[test_rows], flat[test_rows]) > 0.98
