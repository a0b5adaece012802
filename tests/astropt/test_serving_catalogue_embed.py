"""Search by image goes through the inference runtime: an uploaded galaxy embedded with a
catalogue's recipe (layer, pooling, random-init baseline) lands on its own catalogue row.

Real parts: a tiny checkpoint with the shipped codec, GalSim mock galaxies, catalogues written
by ``embed_catalogue``, the runtime and its wire form.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from astropt.checkpoints import CheckpointError, save_checkpoint
from astropt.codec import load_codec
from astropt.constants import DEFAULT_BANDS
from astropt.data.mock import simulate_galaxy
from astropt.images import Cube
from astropt.model import GPT, GPTConfig
from astropt.science import EmbedOptions, SourceSpec, embed_catalogue, load_embed_model
from astropt.science.catalogue import read_catalogue
from astropt.serving.runtime import InferenceRuntime, RuntimeConfig
from astropt.serving.wire import InferenceRequest, InferenceResult

N, SEED = 8, 21
RECIPE = EmbedOptions(pool="mean", layer=0, batch_size=4)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "best"
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=576))
    save_checkpoint(path, model, meta={"codec": load_codec("shipped").info.to_dict()})
    return path


@pytest.fixture(scope="module")
def runtime():
    return InferenceRuntime(RuntimeConfig(device="cpu", precision="float32", torch_threads=1))


def catalogue(checkpoint, root, random_init=None):
    model = load_embed_model(checkpoint, random_init=random_init)
    source = SourceSpec("mock", n=N, seed=SEED, path=str(root / "mock"))
    result = embed_catalogue(model, source, root / f"cat-{random_init}", RECIPE)
    return read_catalogue(result.out_dir), result.manifest


def request(checkpoint, row: int, manifest, **extra) -> InferenceRequest:
    cube = Cube(simulate_galaxy(SEED, row)["flux"].astype(np.float32), DEFAULT_BANDS)
    fields = {
        "pooling": manifest["pooling"],
        "layer": manifest["layer"],
        "reads": manifest["inputs"],
        "random_init": (manifest["model"].get("seed")),
        **extra,
    }
    return InferenceRequest("embed", checkpoint, cube, **fields)


@pytest.mark.parametrize("random_init", [None, 5])
def test_an_upload_lands_on_its_own_row_of_the_catalogue(
    checkpoint, runtime, tmp_path, random_init
) -> None:
    rows, manifest = catalogue(checkpoint, tmp_path, random_init)
    wanted = [request(checkpoint, row, manifest) for row in (2, 6)]
    sent = [InferenceRequest.from_wire(r.to_wire()) for r in wanted]  # as the queue carries it
    assert [(r.layer, r.random_init, r.reads) for r in sent] == [
        (0, random_init, manifest["inputs"])
    ] * 2
    answers = runtime.run_batch(sent)
    for row, answer in zip((2, 6), answers, strict=True):
        vector = InferenceResult.from_wire(answer.to_wire(), "embed").value["mean"]
        np.testing.assert_allclose(vector, rows.embeddings[row], rtol=1e-4, atol=1e-5)
    other_row = rows.embeddings[3]
    assert not np.allclose(answers[0].value["mean"], other_row, atol=1e-3)


def test_a_checkpoint_that_reads_otherwise_is_refused(checkpoint, runtime, tmp_path) -> None:
    _, manifest = catalogue(checkpoint, tmp_path)
    changed = request(checkpoint, 0, manifest, reads={"tokeniser": "aion", "codec": "0" * 16})
    with pytest.raises(CheckpointError, match="reads its images otherwise"):
        runtime.run_batch([changed])
