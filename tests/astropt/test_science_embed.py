"""Embedding catalogues: a real tiny checkpoint over real mock galaxies, real Parquet on disk."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from astropt.checkpoints import save_checkpoint
from astropt.cli import main
from astropt.codec import load_codec
from astropt.data.mock import simulate_galaxy
from astropt.images import centre_crop
from astropt.model import GPT, GPTConfig
from astropt.science import (
    CatalogueError,
    EmbedOptions,
    SourceSpec,
    embed_catalogue,
    embed_catalogues,
    load_embed_model,
    read_catalogue,
)
from astropt.tokenise import shift_for_training

N, SEED = 20, 5


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=576))
    path = tmp_path_factory.mktemp("ckpt") / "best"
    save_checkpoint(path, model, meta={"codec": load_codec("random:0").info.to_dict()})
    return path


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return SourceSpec("mock", n=N, seed=SEED, path=str(tmp_path_factory.mktemp("mock") / "m"))


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_embed_model(checkpoint)


@pytest.fixture(scope="module")
def centre_catalogue(model, source, tmp_path_factory):
    out = tmp_path_factory.mktemp("cats") / "centre"
    calls = []
    result = embed_catalogue(
        model,
        source,
        out,
        EmbedOptions(pool="centre", centre=2, batch_size=8),
        progress=lambda done, total: calls.append((done, total)),
    )
    return result, read_catalogue(out), calls


def direct_hidden(model, index: int, layer: int = -1) -> torch.Tensor:
    """Hidden states of one mock galaxy computed by hand, block by block."""
    galaxy = simulate_galaxy(SEED, index)
    tokens = model.codec.encode(centre_crop(galaxy["flux"])[None])
    inputs, _ = shift_for_training(tokens)
    gpt = model.model
    with torch.no_grad():
        x = gpt.encoders["images_aion"](inputs["images_aion"]) + gpt.embedders["images_aion"](
            inputs["images_aion_positions"]
        )
        for block in gpt.transformer.h[: layer % len(gpt.transformer.h) + 1]:
            x = block(x)
        if layer == -1:
            x = gpt.transformer.ln_f(x)
    return x[0]


def test_catalogue_has_one_row_per_object_and_its_manifest(centre_catalogue):
    result, cat, calls = centre_catalogue
    assert result.status == "completed" and result.count == N
    assert len(cat) == N and len(set(cat.object_ids)) == N
    assert (
        cat.manifest["count"] == N
        and cat.manifest["embedding_dim"] == 32 == cat.embeddings.shape[1]
    )
    assert cat.embeddings.dtype == np.float32
    assert (
        cat.manifest["pooling"] == "centre"
        and cat.manifest["centre"] == 2
        and cat.manifest["layer"] == -1
    )
    assert cat.manifest["codec"]["spec"] == "random:0"
    assert cat.manifest["data_source"]["seed"] == SEED
    assert calls == [(0, N), (8, N), (16, N), (20, N)]
    assert cat.columns["aperture_flux"].shape == (N, 20)


def test_truth_columns_ride_along(centre_catalogue):
    _, cat, _ = centre_catalogue
    for row in (0, 13):
        params = simulate_galaxy(SEED, row)["params"]
        assert cat.object_ids[row] == f"mock-s{SEED}-{row:08d}"
        for key in ("mag_r", "bulge_fraction", "disk_hlr_arcsec", "disk_q", "psf_fwhm_r"):
            assert cat.label(key)[row] == pytest.approx(params[key])
        mag_g = 22.5 - 2.5 * np.log10(params["flux_g"])
        assert cat.label("g_r")[row] == pytest.approx(mag_g - params["mag_r"], abs=1e-9)


def test_centre_pool_is_the_mean_of_the_central_tokens(centre_catalogue, model):
    _, cat, _ = centre_catalogue
    hidden = direct_hidden(model, 7)
    centre = [11 * 24 + 11, 11 * 24 + 12, 12 * 24 + 11, 12 * 24 + 12]  # the 2x2 middle of 24x24
    np.testing.assert_allclose(
        cat.embeddings[7], hidden[centre].mean(0).numpy(), rtol=1e-4, atol=1e-5
    )


def test_mean_pool_of_an_earlier_layer(model, source, tmp_path):
    embed_catalogue(
        model, source, tmp_path / "c", EmbedOptions(pool="mean", layer=0, batch_size=16)
    )
    cat = read_catalogue(tmp_path / "c")
    hidden = direct_hidden(model, 3, layer=0)
    np.testing.assert_allclose(cat.embeddings[3], hidden.mean(0).numpy(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(cat.embeddings[3], direct_hidden(model, 3).mean(0).numpy(), atol=1e-3)


def test_cancelled_embed_leaves_no_catalogue(model, source, tmp_path):
    polls = []

    def stop() -> bool:
        polls.append(1)
        return len(polls) > 1  # after the first batch

    out = tmp_path / "cancelled"
    result = embed_catalogue(model, source, out, EmbedOptions(batch_size=8), should_stop=stop)
    assert result.status == "cancelled" and result.out_dir is None and result.count == 8
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(CatalogueError, match="not a complete catalogue"):
        read_catalogue(out)


def test_cancel_keeps_an_older_complete_catalogue(model, source, tmp_path):
    out = tmp_path / "cat"
    embed_catalogue(model, source, out, EmbedOptions(batch_size=16))
    before = (out / "catalogue.parquet").read_bytes()
    result = embed_catalogue(
        model, source, out, EmbedOptions(pool="last"), should_stop=lambda: True
    )
    assert result.status == "cancelled" and (out / "catalogue.parquet").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat"]


def test_refuses_to_overwrite_something_else(model, source, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CatalogueError, match="not a catalogue"):
        embed_catalogue(model, source, tmp_path, EmbedOptions())
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_random_init_has_the_same_shape_and_is_reproducible(checkpoint, model):
    a = load_embed_model(checkpoint, random_init=3)
    b = load_embed_model(checkpoint, random_init=3)
    c = load_embed_model(checkpoint, random_init=4)
    pa, pb, pc, pm = (dict(m.model.named_parameters()) for m in (a, b, c, model))
    assert {k: v.shape for k, v in pa.items()} == {k: v.shape for k, v in pm.items()}
    w = "transformer.h.0.attn.c_attn.weight"
    assert (
        torch.equal(pa[w], pb[w])
        and not torch.equal(pa[w], pc[w])
        and not torch.equal(pa[w], pm[w])
    )
    assert a.description == {**a.description, "kind": "random-init", "seed": 3}
    assert a.codec.info == model.codec.info


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="pooling"):
        EmbedOptions(pool="max")
    with pytest.raises(ValueError, match="centre size"):
        EmbedOptions(pool="centre", centre=24)


def test_cli_embed_then_probe(checkpoint, source, tmp_path, capsys):
    out = tmp_path / "cat"
    rc = main(
        [
            "embed",
            "--model",
            str(checkpoint),
            "--n",
            str(N),
            "--seed",
            str(SEED),
            "--data-path",
            source.path,
            "--pool",
            "last",
            "--layer",
            "-2",
            "--threads",
            "1",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == N and manifest["pooling"] == "last" and manifest["layer"] == -2
    assert "20 embeddings (32-d, last pool, layer -2)" in capsys.readouterr().out
    rc = main(
        ["probe", str(out), "--labels", "mag_r", "--folds", "2", "--json", str(tmp_path / "p.json")]
    )
    report = json.loads((tmp_path / "p.json").read_text())
    assert rc == 0 and [f["name"] for f in report["features"]] == ["embedding", "aperture_flux"]
    assert len(report["features"][0]["scores"]["mag_r"]["r2_folds"]) == 2


def test_several_recipes_from_one_pass_equal_single_runs(model, source, centre_catalogue, tmp_path):
    _, single, _ = centre_catalogue
    outputs = {
        tmp_path / "a": EmbedOptions(pool="mean", layer=0),
        tmp_path / "b": EmbedOptions(pool="centre", centre=2),
    }
    results = embed_catalogues(model, source, outputs)
    assert [r.manifest["layer"] for r in results] == [0, -1]
    np.testing.assert_allclose(
        read_catalogue(tmp_path / "b").embeddings, single.embeddings, rtol=1e-5, atol=1e-6
    )
    hidden = direct_hidden(model, 11, layer=0)
    np.testing.assert_allclose(
        read_catalogue(tmp_path / "a").embeddings[11], hidden.mean(0).numpy(), rtol=1e-4, atol=1e-5
    )
    with pytest.raises(ValueError, match="layer must be in"):
        embed_catalogues(model, source, {tmp_path / "c": EmbedOptions(layer=2)})


@pytest.mark.slow
def test_codec_tokens_come_from_the_token_cache_the_second_time(
    model, source, tmp_path, monkeypatch
):
    """The first catalogue of a source writes its codec tokens per shard; later catalogues of
    that source and codec read them (shown by planting other tokens: the rows follow them);
    a file that does not fit its rows is ignored and written again."""

    from astropt.tokenise import token_cache_dir

    monkeypatch.setenv("ASTROPT_DATA_DIR", str(tmp_path / "data"))
    options = EmbedOptions(pool="mean", batch_size=8)
    first = embed_catalogue(model, source, tmp_path / "a", options, shard_rows=8)
    files = sorted((token_cache_dir() / "catalogues").glob("*/rows_*.npy"))
    assert [f.name for f in files] == [
        "rows_000000000_000000008.npy",
        "rows_000000008_000000016.npy",
        "rows_000000016_000000020.npy",
    ]
    tokens = [np.load(f) for f in files]
    assert tokens[0].dtype == np.int16 and tokens[0].shape == (8, 576)
    expected = model.codec.encode(centre_crop(simulate_galaxy(seed=SEED, index=9)["flux"])[None])
    assert np.array_equal(tokens[1][1], expected[0].numpy())  # row 9: its own tokens

    again = embed_catalogue(model, source, tmp_path / "b", options, shard_rows=8)
    assert np.array_equal(
        read_catalogue(tmp_path / "a").embeddings, read_catalogue(tmp_path / "b").embeddings
    )
    assert first.count == again.count == N

    np.save(files[0], tokens[0][::-1].copy())  # plant the first shard's tokens in reverse order
    np.save(files[2], tokens[2][:2].copy())  # too few rows: ignored
    planted = embed_catalogue(model, source, tmp_path / "c", options, shard_rows=8)
    assert planted.status == "completed"
    a, c = read_catalogue(tmp_path / "a").embeddings, read_catalogue(tmp_path / "c").embeddings
    np.testing.assert_allclose(c[:8], a[:8][::-1], rtol=1e-5, atol=1e-6)  # read from the cache
    np.testing.assert_allclose(c[8:], a[8:], rtol=1e-5, atol=1e-6)
    assert np.load(files[2]).shape == (4, 576)  # the short file was encoded and written again
