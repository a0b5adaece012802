"""Embedding, probing and cut-outs from a token data set (#24): the model reads the stored codec
tokens; what comes out equals the same work done from the images.

Real parts: the shipped codec, GalSim mock galaxies on disk, a token data set made by
``tokenise``, a real (tiny) checkpoint, Parquet catalogues.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from astropt.checkpoints import save_checkpoint
from astropt.cli import main
from astropt.codec import CodecError, load_codec
from astropt.config import DataSettings
from astropt.constants import DEFAULT_BANDS
from astropt.model import GPT, GPTConfig
from astropt.science import EmbedOptions, SourceSpec, embed_catalogue, load_embed_model
from astropt.science.catalogue import read_catalogue
from astropt.science.checkpoint_probes import probe_checkpoints
from astropt.science.cutouts import DECODED, RowImages
from astropt.science.surprisal import SURPRISAL_COLUMN
from astropt.science.token_source import check_model_codec, open_token_source
from astropt.tokens import TokeniseConfig, open_token_dataset, tokenise

N, SEED = 24, 11
OPTIONS = EmbedOptions(pool="centre", centre=2, batch_size=8)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> SourceSpec:
    return SourceSpec("mock", n=N, seed=SEED, path=str(tmp_path_factory.mktemp("mock") / "m"))


@pytest.fixture(scope="module")
def token_set(images, tmp_path_factory) -> SourceSpec:
    out = tmp_path_factory.mktemp("tokens") / "ds"
    data = DataSettings(source="mock", n_mock=N, mock_seed=SEED, path=images.path)
    config = TokeniseConfig(
        data=data, out_dir=str(out), shard_size=16, batch_size=8, num_workers=0, columns=["mag_r"]
    )
    assert tokenise(config, progress=False).n_galaxies == N
    return SourceSpec("tokens", path=str(out))


def tiny_checkpoint(path, codec: str, seed: int = 0, **model) -> str:
    torch.manual_seed(seed)
    gpt = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=576, **model))
    save_checkpoint(path, gpt, meta={"codec": load_codec(codec).info.to_dict()})
    return str(path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "best", "shipped")


@pytest.fixture(scope="module")
def catalogues(checkpoint, images, token_set, tmp_path_factory):
    model = load_embed_model(checkpoint)
    root = tmp_path_factory.mktemp("cats")
    from_images = embed_catalogue(model, images, root / "images", OPTIONS)
    from_tokens = embed_catalogue(model, token_set, root / "tokens", OPTIONS, shard_rows=10)
    return (
        from_images,
        from_tokens,
        read_catalogue(root / "images"),
        read_catalogue(root / "tokens"),
    )


def test_a_catalogue_from_tokens_equals_one_from_the_images(catalogues) -> None:
    from_images, from_tokens, images, tokens = catalogues
    assert from_tokens.status == "completed" and from_tokens.count == N
    assert list(tokens.object_ids) == list(images.object_ids)
    np.testing.assert_allclose(tokens.embeddings, images.embeddings, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        tokens.columns[SURPRISAL_COLUMN], images.columns[SURPRISAL_COLUMN], rtol=1e-5
    )
    np.testing.assert_allclose(tokens.columns["mag_r"], images.columns["mag_r"], rtol=1e-6)
    assert from_tokens.manifest["data_source"]["kind"] == "tokens"
    assert (
        from_tokens.manifest["codec"]["fingerprint"] == from_images.manifest["codec"]["fingerprint"]
    )
    assert "aperture_flux" not in tokens.columns  # no pixels, no photometry


def test_a_model_of_another_codec_or_of_patches_cannot_read_the_tokens(token_set, tmp_path) -> None:
    other = load_embed_model(tiny_checkpoint(tmp_path / "other", "random:3"))
    with pytest.raises(CodecError) as refused:
        embed_catalogue(other, token_set, tmp_path / "cat", OPTIONS)
    fingerprint = open_token_dataset(token_set.path).codec_fingerprint
    assert fingerprint in str(refused.value)
    assert other.codec.info.fingerprint in str(refused.value)
    opened = open_token_source(token_set)
    with pytest.raises(CodecError, match="flux patches"):
        check_model_codec(None, opened, "a patch model")  # what a patch model's catalogue meets
    opened.close()
    assert not (tmp_path / "cat").exists()


def test_a_cancelled_catalogue_from_tokens_resumes_to_the_same_rows(
    checkpoint, token_set, catalogues, tmp_path
) -> None:
    model = load_embed_model(checkpoint)
    polls = iter(range(100))
    stopped = embed_catalogue(
        model,
        token_set,
        tmp_path / "cat",
        OPTIONS,
        should_stop=lambda: next(polls) >= 2,  # polled before each batch: stops in the third
        shard_rows=8,
    )
    assert stopped.status == "cancelled" and stopped.shards_kept == 2
    resumed = embed_catalogue(model, token_set, tmp_path / "cat", OPTIONS, shard_rows=8)
    assert resumed.status == "completed" and resumed.resumed_from == 16
    again = read_catalogue(tmp_path / "cat")
    np.testing.assert_allclose(again.embeddings, catalogues[2].embeddings, rtol=1e-5, atol=1e-5)


def test_probe_checkpoints_from_tokens_equals_probing_the_images(
    checkpoint, images, token_set, tmp_path
) -> None:
    run = tmp_path / "run"
    tiny_checkpoint(run / "checkpoints" / "step_000010", "shipped", seed=1)
    kwargs = {"options": OPTIONS, "folds": 3, "random_init": 0}
    from_images = probe_checkpoints(run, ["mag_r"], images, **kwargs)
    from_tokens = probe_checkpoints(run, ["mag_r"], token_set, **kwargs)
    assert from_tokens.source["kind"] == "tokens"
    for a, b in zip(
        [*from_images.rows, from_images.random_init],
        [*from_tokens.rows, from_tokens.random_init],
        strict=True,
    ):
        assert a.r2("mag_r") == pytest.approx(b.r2("mag_r"), abs=1e-4)


def test_a_cutout_of_a_token_catalogue_is_its_tokens_decoded(catalogues, token_set) -> None:
    _, from_tokens, _, tokens = catalogues
    rows = RowImages(from_tokens.manifest)
    image = rows.image(17, tokens.object_ids[17])
    assert image.origin == DECODED and image.flux.shape == (4, 96, 96)
    dataset = open_token_dataset(token_set.path)
    expected = load_codec("shipped").decode(
        torch.from_numpy(dataset.take([17]).astype(np.int64)), DEFAULT_BANDS
    )
    np.testing.assert_allclose(image.flux, expected[0].numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(LookupError, match="not"):
        rows.image(17, tokens.object_ids[3])


def test_cli_embed_from_tokens(checkpoint, token_set, tmp_path, capsys) -> None:
    out = tmp_path / "cli"
    argv = ["embed", "--model", checkpoint, "--data", "tokens", "--data-path", token_set.path]
    assert main([*argv, "--out", str(out), "--quiet", "--n", "10"]) == 0
    expected = open_token_dataset(token_set.path).object_ids()[:10]
    assert list(read_catalogue(out).object_ids) == expected


def test_a_fine_tune_from_tokens_equals_one_from_the_images(images, token_set, tmp_path) -> None:
    from astropt.finetune import FinetuneConfig, LabelError
    from astropt.finetune.train import FinetuneRun
    from tests.astropt.finetune_helpers import tiny_checkpoint as aion_checkpoint

    init = aion_checkpoint(tmp_path / "init")
    common = {
        "init": str(init),
        "labels": ["mag_r"],
        "mode": "head",
        "steps": 4,
        "eval_interval": 2,
        "batch_size": 4,
        "val_fraction": 0.25,
        "test_fraction": 0.25,
        "device": "cpu",
    }
    runs = {}
    for name, data in (
        ("images", {"source": "mock", "n_mock": N, "mock_seed": SEED, "path": images.path}),
        ("tokens", {"source": "tokens", "path": token_set.path}),
    ):
        config = FinetuneConfig.model_validate(
            {**common, "data": data, "out_dir": str(tmp_path / name)}
        )
        runs[name] = FinetuneRun(config).run()
    a, b = runs["images"], runs["tokens"]
    assert a.status == b.status == "completed"
    assert a.data.object_ids == b.data.object_ids and list(a.data.splits) == list(b.data.splits)
    assert a.data.inputs.keys() == b.data.inputs.keys()
    assert all(torch.equal(a.data.inputs[k], b.data.inputs[k]) for k in a.data.inputs)
    assert a.best_val_loss == pytest.approx(b.best_val_loss, rel=1e-5)
    with pytest.raises(LabelError, match="the columns of the token data set"):
        bad = FinetuneConfig.model_validate(
            {
                **common,
                "labels": ["bulge_fraction"],
                "data": {"source": "tokens", "path": token_set.path},
            }
        )
        FinetuneRun(bad)
