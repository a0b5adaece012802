"""Anomaly scores (issue #26): the surprisal column against the model's own loss, the default
ranking on planted anomalies against chance, the generator, and the map's colours."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from astropt.checkpoints.shipped import SHIPPED_MODEL_DIR
from astropt.data.anomalies import KINDS, planted
from astropt.data.mock import simulate_galaxy
from astropt.images import centre_crop
from astropt.science import SourceSpec, embed_catalogue, load_embed_model, read_catalogue
from astropt.science.anomaly import (
    DEFAULT_METHOD,
    METHODS,
    NEEDS_SURPRISAL,
    AnomalyError,
    anomaly_scores,
    catalogue_anomaly_scores,
)
from astropt.science.anomaly_eval import embed_fluxes, top_k_hits
from astropt.science.figures import map_axes, scaled_colours
from astropt.tokenise import shift_for_training


@pytest.fixture(scope="module")
def shipped():
    torch.set_num_threads(1)
    return load_embed_model(SHIPPED_MODEL_DIR)


@pytest.mark.slow
def test_the_surprisal_column_is_each_galaxys_own_next_token_loss(shipped, tmp_path):
    seed, n = 31, 8
    result = embed_catalogue(
        shipped, SourceSpec("mock", n=n, seed=seed, path=str(tmp_path / "mock")), tmp_path / "cat"
    )
    catalogue = read_catalogue(result.out_dir)
    assert catalogue.manifest["surprisal_column"] == "surprisal"
    column = catalogue.columns["surprisal"]
    for i in range(n):  # independently: the model's training loss of a batch of this one galaxy
        flux = centre_crop(simulate_galaxy(seed, i)["flux"])[None]
        tokens = shipped.codec.encode(
            np.ascontiguousarray(flux), tuple(simulate_galaxy(seed, i)["bands"])
        )
        inputs, targets = shift_for_training(tokens)
        with torch.no_grad():
            logits, loss = shipped.model(inputs, targets)
            logp = torch.log_softmax(logits["images_aion"].double(), dim=-1)
            by_hand = -logp.gather(-1, targets["images_aion"][..., None]).mean()
        assert column[i] == pytest.approx(float(loss), abs=1e-4)
        assert column[i] == pytest.approx(float(by_hand), abs=1e-4)
    assert 0.2 < float(column.mean()) < 2.0  # nats per token: the shipped model's val loss is 0.63


@pytest.mark.slow
def test_the_default_ranking_finds_planted_anomalies_far_better_than_chance(shipped):
    normal = [simulate_galaxy(4343, i)["flux"] for i in range(96)]
    kinds = ("star_spikes", "satellite_trail", "bleed_column", "pure_noise")
    odd = [planted(kind, 4343, 0)["flux"] for kind in kinds]
    embedded = embed_fluxes(shipped, normal + odd, ["normal"] * 96 + list(kinds))
    is_planted = np.arange(100) >= 96
    found = {}
    for method in (DEFAULT_METHOD, "knn_cosine"):
        scores = anomaly_scores(method, embedded.embeddings, embedded.surprisal)
        found[method] = int(top_k_hits(scores, is_planted).sum())
    # chance: 8 of 100 places, 0.32 of the 4 planted expected in the top 8
    assert found[DEFAULT_METHOD] >= 3, found
    assert found[DEFAULT_METHOD] >= found["knn_cosine"], found


def test_every_anomaly_kind_is_reproducible_and_changes_the_read_pixels():
    for kind in KINDS:
        a, b = planted(kind, 9, 3), planted(kind, 9, 3)
        assert np.array_equal(a["flux"], b["flux"]) and a["object_id"] == f"anom-{kind}-s9-000003"
        assert a["flux"].shape == (4, 160, 160) and np.isfinite(a["flux"]).all()
        assert not np.array_equal(a["flux"], planted(kind, 9, 4)["flux"])
    with pytest.raises(ValueError, match="unknown anomaly kind"):
        planted("dragon", 0, 0)


def test_each_method_ranks_an_isolated_point_first_and_surprisal_methods_need_the_column():
    rng = np.random.default_rng(0)
    centres = 3 * rng.normal(
        size=(4, 16)
    )  # four tight clusters off the origin, one object far from all
    x = centres[np.arange(200) % 4] + 0.3 * rng.normal(size=(200, 16)) + 5.0
    x[17] = 5.0 + 3 * rng.normal(size=16)
    surprisal = rng.normal(0.6, 0.05, size=200)
    surprisal[17] = 3.0
    for method in METHODS:
        scores = anomaly_scores(method, x, surprisal)
        assert scores.shape == (200,) and int(np.argmax(scores)) == 17, method
    for method in NEEDS_SURPRISAL:
        with pytest.raises(AnomalyError, match="surprisal"):
            anomaly_scores(method, x)
    with pytest.raises(AnomalyError, match="unknown"):
        anomaly_scores("vibes", x, surprisal)

    class Cat:
        embeddings, columns = x, {}

    assert catalogue_anomaly_scores(Cat())[0] == "knn_cosine"  # no surprisal: the earlier default
    Cat.columns = {"surprisal": surprisal}
    assert catalogue_anomaly_scores(Cat())[0] == DEFAULT_METHOD


def test_the_map_keeps_objects_without_a_value_and_spreads_skewed_scores():
    xy = np.array([[0.0, 0.0], [1.0, 1.0], [50.0, -40.0], [2.0, 0.5]])
    colour = np.array([1.0, 2.0, np.nan, 3.0])
    fig = map_axes(xy, colour, "g_r", "t")
    ax = fig.axes[0]
    grey, coloured = ax.collections
    assert len(grey.get_offsets()) == 1 and len(coloured.get_offsets()) == 3
    assert (
        ax.get_xlim()[1] >= 50 and ax.get_ylim()[0] <= -40
    )  # the far NaN point is inside the limits
    assert "no g_r value (1)" in [t.get_text() for t in ax.get_legend().get_texts()]

    skewed = np.array(
        [0.01, 0.011, 0.012, 0.013, 5.0]
    )  # one huge score: linear paints the rest alike
    ranked, suffix = scaled_colours(skewed, "rank")
    assert suffix == " (percentile rank)" and np.allclose(ranked, [0, 0.25, 0.5, 0.75, 1.0])
    logged, _ = scaled_colours(np.array([1.0, 100.0, -1.0, np.nan]), "log")
    assert np.allclose(logged[:2], [0, 2]) and np.isnan(logged[2:]).all()
