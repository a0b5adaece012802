"""Ridge probes: known linear relations are recovered, noise is not, baselines align by id."""

from __future__ import annotations

import json

import numpy as np
import pytest

from astropt.science import CatalogueError, ProbeReport, probe_catalogue, ridge_cv, write_catalogue


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """3000 objects with 16-d embeddings, a label linear in them and that label shuffled."""
    rng = np.random.default_rng(0)
    n, d = 3000, 16
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, d) + rng.normal(size=d)
    w = rng.normal(size=d)
    linear = x @ w + 4.0
    ids = [f"obj-{i:04d}" for i in range(n)]
    columns = {
        "linear": linear,
        "shuffled": rng.permutation(linear),
        "half": x[:, 0] + rng.normal(size=n) * x[:, 0].std(),
    }
    root = tmp_path_factory.mktemp("probe")
    write_catalogue(
        root / "cat", ids, x, columns, {"model": "synthetic"}, aperture_flux=rng.normal(size=(n, 5))
    )
    return root, x, columns, ids


def test_linear_label_is_recovered_and_shuffled_is_not(synthetic):
    root, *_ = synthetic
    report = probe_catalogue(root / "cat", ["linear", "shuffled", "half"])
    assert report.n == 3000 and report.folds == 5 and report.alpha == 100.0
    assert report.r2("embedding", "linear") > 0.99  # ridge shrinkage costs ~(100/2400)**2
    assert report.r2("embedding", "shuffled") <= 0.05
    # y = x0 + noise of the same variance: R^2 = 0.5 in expectation
    assert report.r2("embedding", "half") == pytest.approx(0.5, abs=0.08)
    # the aperture column of this catalogue is pure noise
    assert report.r2("aperture_flux", "linear") <= 0.05
    assert len(report.features[0].scores["linear"].r2_folds) == 5


def test_one_fold_matches_closed_form_standardised_ridge():
    from sklearn.model_selection import KFold

    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 8)) * np.arange(1, 9)
    y = x @ rng.normal(size=8) + rng.normal(size=60) * 5
    score = ridge_cv(x, y, folds=3, alpha=100.0, seed=7)
    train, test = next(KFold(3, shuffle=True, random_state=7).split(x))
    mu, sd = x[train].mean(0), x[train].std(0)
    xs, xt = (x[train] - mu) / sd, (x[test] - mu) / sd
    w = np.linalg.solve(xs.T @ xs + 100.0 * np.eye(8), xs.T @ (y[train] - y[train].mean()))
    pred = xt @ w + y[train].mean()
    r2 = 1 - np.sum((y[test] - pred) ** 2) / np.sum((y[test] - y[test].mean()) ** 2)
    assert score.r2_folds[0] == pytest.approx(r2, rel=1e-9)
    assert score.r2_mean == pytest.approx(np.mean(score.r2_folds)) and score.n == 60


def test_bootstrap_interval_brackets_the_score():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 4))
    y = x[:, 0] + rng.normal(size=300)
    s = ridge_cv(x, y, bootstrap=200)
    assert s.ci_low is not None and s.ci_low < s.r2_mean < s.ci_high
    assert s.ci_low > 0.3 and s.ci_high < 0.7


def test_non_finite_labels_are_left_out():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(100, 3))
    y = x[:, 1] * 2
    y[:10] = np.nan
    assert ridge_cv(x, y).n == 90


def test_baseline_rows_are_matched_by_object_id(synthetic, tmp_path):
    root, x, columns, ids = synthetic
    order = np.arange(len(ids))[::-1]
    write_catalogue(tmp_path / "reversed", [ids[i] for i in order], x[order], {})
    report = probe_catalogue(
        root / "cat", ["linear", "half"], baselines={"copy": tmp_path / "reversed"}, aperture=False
    )
    assert [f.name for f in report.features] == ["embedding", "copy"]
    for label in ("linear", "half"):
        assert report.r2("copy", label) == pytest.approx(report.r2("embedding", label), abs=1e-9)
    write_catalogue(tmp_path / "fewer", ids[:-1], x[:-1], {})
    with pytest.raises(CatalogueError, match="same objects"):
        probe_catalogue(root / "cat", ["linear"], baselines={"fewer": tmp_path / "fewer"})


def test_report_round_trips_through_json(synthetic):
    root, *_ = synthetic
    report = probe_catalogue(root / "cat", ["half"], folds=4, bootstrap=20, seed=3)
    again = ProbeReport.from_dict(json.loads(report.to_json()))
    assert again == report and again.features[0].scores["half"].ci_low is not None
    assert "half" in report.table() and "aperture_flux" in report.table()


def test_unknown_label_names_the_columns(synthetic):
    root, *_ = synthetic
    with pytest.raises(CatalogueError, match="half, linear, shuffled"):
        probe_catalogue(root / "cat", ["mag_r"])


def test_aperture_features_sum_the_flux_inside_each_radius():
    from astropt.science.photometry import APERTURE_RADII_PX, ASINH_SOFTENING, aperture_features

    flux = np.zeros((1, 4, 160, 160), dtype=np.float32)
    flux[0, 1, 80, 80] = 1.0  # r band, next to the crop centre (79.5, 79.5)
    flux[0, 2, 80, 92] = 2.0  # i band, 12.5 px from the centre
    flux[0, 3, 0, 0] = 50.0  # z band, outside the 96x96 crop
    features = aperture_features(flux).reshape(4, len(APERTURE_RADII_PX))
    expected = np.zeros((4, 5))
    expected[1] = np.arcsinh(1.0 / ASINH_SOFTENING)
    expected[2, 3:] = np.arcsinh(2.0 / ASINH_SOFTENING)  # radii 16 and 32 only
    np.testing.assert_allclose(features, expected, rtol=1e-6)


def test_the_shuffled_label_control_is_near_zero_where_the_label_is_recovered(synthetic):
    root, *_ = synthetic
    report = probe_catalogue(
        root / "cat", ["linear", "half"], aperture=False, shuffled=True, seed=3
    )
    assert [f.name for f in report.features] == ["embedding", "shuffled_labels"]
    assert report.r2("embedding", "linear") > 0.99
    assert (
        abs(report.r2("shuffled_labels", "linear")) < 0.02
        and abs(report.r2("shuffled_labels", "half")) < 0.02
    )
    again = probe_catalogue(root / "cat", ["linear"], aperture=False, shuffled=True, seed=3)
    assert again.r2("shuffled_labels", "linear") == report.r2("shuffled_labels", "linear")  # seeded


def test_the_figure_predictions_are_the_probe_folds(synthetic):
    from astropt.science import read_catalogue
    from astropt.science.figures import out_of_fold_predictions, probe_figure

    root, *_ = synthetic
    cat = read_catalogue(root / "cat")
    truth, pred = out_of_fold_predictions(cat.embeddings, cat.label("half"), folds=5, seed=0)
    pooled = 1 - np.sum((truth - pred) ** 2) / np.sum((truth - truth.mean()) ** 2)
    assert pooled == pytest.approx(
        ridge_cv(cat.embeddings, cat.label("half"), bootstrap=0).r2_mean, abs=0.02
    )
    assert probe_figure(cat, ["linear", "half"], {"linear": 1.0, "half": 0.5}).startswith(
        b"\x89PNG"
    )


def test_a_label_table_is_joined_by_object_id(synthetic, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from astropt.cli import main
    from astropt.science import read_catalogue
    from astropt.science.label_tables import join_labels, read_label_table

    root, x, columns, ids = synthetic
    rng = np.random.default_rng(5)
    keep = rng.permutation(len(ids))[:2500]  # 500 objects missing from the table, rows shuffled
    table = pa.table(
        {
            "object_id": [ids[i] for i in keep] + ["not-in-catalogue"],
            "planted": np.append(columns["linear"][keep], 1e9),
            "note": ["x"] * 2501,
        }
    )
    pacsv.write_csv(table, tmp_path / "labels.csv")
    joined = join_labels(read_catalogue(root / "cat"), read_label_table(tmp_path / "labels.csv"))
    note = joined.classes("note")  # text joins as class names, "" where the table lacks the object
    assert joined.is_categorical("note") and (note == "").sum() == 500 and set(note[keep]) == {"x"}
    planted = joined.label("planted")
    assert np.isnan(planted).sum() == 500
    assert np.array_equal(planted[keep], columns["linear"][keep])  # each object its own value
    report = probe_catalogue(joined, ["planted"])
    assert (
        report.features[0].scores["planted"].n == 2500 and report.r2("embedding", "planted") > 0.99
    )

    assert (
        main(
            [
                "probe",
                str(root / "cat"),
                "--labels",
                "planted",
                "--label-table",
                str(tmp_path / "labels.csv"),
                "--no-aperture",
            ]
        )
        == 0
    )
    assert "planted" in capsys.readouterr().out
    for bad, message in [
        (pa.table({"id": ["a"], "v": [1.0]}), "no 'object_id' column"),
        (pa.table({"object_id": [ids[0], ids[0]], "v": [1.0, 2.0]}), "more than once"),
        (pa.table({"object_id": ["elsewhere"], "v": [1.0]}), "no object of the catalogue"),
        (pa.table({"object_id": [ids[0]], "linear": [1.0]}), "already has"),
    ]:
        pacsv.write_csv(bad, tmp_path / "bad.csv")
        with pytest.raises(CatalogueError, match=message):
            join_labels(read_catalogue(root / "cat"), read_label_table(tmp_path / "bad.csv"))


@pytest.fixture(scope="module")
def classes():
    """2400 objects: a 3-class label that is the argmax of 3 linear functions of the embedding
    (a multinomial logistic regression can represent it), and an unbalanced label (60/30/10 %)
    drawn independently of the embeddings."""
    rng = np.random.default_rng(7)
    n, d = 2400, 12
    x = rng.normal(size=(n, d))
    planted = np.array(["elliptical", "spiral", "irregular"])[
        np.argmax(x @ rng.normal(size=(d, 3)), axis=1)
    ]
    unrelated = rng.choice(np.array(["a", "b", "c"]), size=n, p=[0.6, 0.3, 0.1])
    ids = [f"obj-{i:04d}" for i in range(n)]
    codes = np.searchsorted(np.array(["elliptical", "irregular", "spiral"]), planted).astype(
        np.float64
    )
    return ids, x, {"planted": planted, "unrelated": unrelated, "code": codes}


def test_a_planted_class_is_classified_and_an_unrelated_one_stays_at_chance(classes, tmp_path):
    from astropt.science import read_catalogue

    ids, x, columns = classes
    write_catalogue(tmp_path / "cat", ids, x, columns, {"model": "synthetic"})
    cat = read_catalogue(tmp_path / "cat")
    assert cat.is_categorical("planted") and not cat.is_categorical("code")
    report = probe_catalogue(
        cat,
        ["planted", "unrelated", "code"],
        categorical=["code"],
        aperture=False,
        shuffled=True,
        bootstrap=200,
    )
    planted = report.features[0].scores["planted"]
    assert planted.metric == "accuracy" and planted.n_classes == 3 and planted.n == 2400
    assert planted.r2_mean > 0.95 and planted.chance < 0.45
    assert (
        planted.ci_low <= planted.r2_mean <= planted.ci_high
        and planted.ci_high - planted.ci_low < 0.03
    )
    unrelated = report.features[0].scores["unrelated"]
    assert unrelated.chance == pytest.approx(0.6, abs=0.03)
    assert abs(unrelated.r2_mean - unrelated.chance) < 0.03  # nothing to learn: the commonest class
    shuffled = report.features[1].scores["planted"]
    assert (
        report.features[1].name == "shuffled_labels"
        and abs(shuffled.r2_mean - shuffled.chance) < 0.04
    )
    # integer class codes named categorical: the same classes under other names, the same folds
    code = report.features[0].scores["code"]
    assert code.metric == "accuracy" and code.r2_folds == pytest.approx(planted.r2_folds)
    assert "(acc; chance" in report.table()
    assert (
        ProbeReport.from_dict(json.loads(report.to_json())).features[0].scores["planted"] == planted
    )


def test_class_folds_are_object_level_and_stratified(classes):
    from astropt.science.probe import class_folds

    _, _, columns = classes
    y = columns["unrelated"]
    folds = class_folds(y, 5, seed=1)
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(len(y)))  # every object in exactly one test fold
    for train, test in folds:
        assert not set(train) & set(test)
        assert abs(np.mean(y[test] == "c") - 0.1) < 0.02  # each fold keeps the class shares


def test_rare_or_single_classes_are_refused_with_the_reason(classes):
    from astropt.science.probe import logistic_cv

    _, x, _ = classes
    y = np.array(["common"] * 2398 + ["rare"] * 2)
    with pytest.raises(ValueError, match="class 'rare' has 2 objects, fewer than the 5 folds"):
        logistic_cv(x, y)
    with pytest.raises(ValueError, match="one class"):
        logistic_cv(x, np.array(["only"] * 2400))
    with pytest.raises(CatalogueError, match="non-integer"):
        from astropt.science.catalogue import Catalogue

        Catalogue(np.array(["a", "b"]), np.zeros((2, 2)), {"z": np.array([0.5, 1.0])}, {}).classes(
            "z"
        )


def test_the_class_figure_is_the_probe_folds_confusion(classes, tmp_path):
    from astropt.science import read_catalogue
    from astropt.science.figures import out_of_fold_classes, probe_figure
    from astropt.science.probe import logistic_cv

    ids, x, columns = classes
    write_catalogue(tmp_path / "cat", ids, x, columns, {"model": "synthetic"})
    cat = read_catalogue(tmp_path / "cat")
    truth, pred = out_of_fold_classes(cat.embeddings, cat.classes("planted"))
    assert np.mean(truth == pred) == pytest.approx(
        logistic_cv(cat.embeddings, cat.classes("planted")).r2_mean, abs=1e-9
    )  # equal folds: pooled = mean of equal-size folds
    assert probe_figure(
        cat, ["planted", "code"], {"planted": 0.97, "code": 0.97}, categorical=["code"]
    ).startswith(b"\x89PNG")
