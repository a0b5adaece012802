"""The AstroPT GPT: shapes, losses, masking, validation, generation and embeddings."""

from __future__ import annotations

import math

import pytest
import torch

from astropt.model import GPT, GPTConfig, ModalityConfig, ModelConfigError, ModelInputError

VOCAB = 10_000


def tiny_config(**overrides) -> GPTConfig:
    values = dict(block_size=32, n_layer=2, n_head=2, n_embd=32)
    values.update(overrides)
    return GPTConfig(**values)


def token_inputs(tokens: torch.Tensor, name: str = "images_aion") -> dict[str, torch.Tensor]:
    positions = torch.arange(tokens.shape[1]).expand_as(tokens)
    return {name: tokens, f"{name}_positions": positions}


@pytest.fixture
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(tiny_config()).eval()


def test_default_config_is_the_aion_modality():
    config = GPTConfig()
    assert [m.name for m in config.modalities] == ["images_aion"]
    assert config.modalities[0].vocab_size == config.modalities[0].input_size == VOCAB
    assert GPTConfig.from_dict(config.to_dict()) == config


def test_parameter_names_match_upstream_layout(model):
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["encoders.images_aion.wpe.weight"] == (VOCAB, 32)
    assert shapes["embedders.images_aion.wpe.weight"] == (32, 32)
    assert shapes["transformer.h.1.attn.c_attn.weight"] == (96, 32)
    assert shapes["transformer.h.0.mlp.c_fc.weight"] == (128, 32)
    assert shapes["decoders.images_aion.c_fc.weight"] == (128, 32)
    assert shapes["decoders.images_aion.c_proj.weight"] == (VOCAB, 128)
    assert "transformer.ln_f.weight" in shapes
    assert not [k for k in shapes if k.endswith(".bias")]
    assert any(k.endswith(".bias") for k in GPT(tiny_config(bias=True)).state_dict())


def test_residual_projections_use_scaled_init():
    torch.manual_seed(0)
    big = GPT(tiny_config(n_embd=128, n_head=4, n_layer=8))
    assert big.transformer.h[0].mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.05)
    expected = 0.02 / math.sqrt(2 * 8)
    assert big.transformer.h[0].mlp.c_proj.weight.std().item() == pytest.approx(expected, rel=0.05)


def test_discrete_modality_shapes_and_initial_loss(model):
    tokens = torch.randint(0, VOCAB, (3, 20), generator=torch.Generator().manual_seed(1))
    outputs, loss = model(token_inputs(tokens), {"images_aion": tokens})
    assert outputs["images_aion"].shape == (3, 20, VOCAB)
    assert loss.item() == pytest.approx(math.log(VOCAB), abs=0.05)
    _, no_loss = model(token_inputs(tokens))
    assert no_loss is None


def test_ignore_index_minus_one_skips_targets(model):
    tokens = torch.randint(0, VOCAB, (2, 8))
    targets = tokens.clone()
    targets[:, 4:] = -1
    _, masked = model(token_inputs(tokens), {"images_aion": targets})
    _, head_only = model(token_inputs(tokens[:, :4]), {"images_aion": tokens[:, :4]})
    assert masked.item() == pytest.approx(head_only.item(), abs=1e-5)  # causal: same prefix


@pytest.mark.parametrize("name", ["spectra", "images_aion"])
def test_continuous_modality_uses_huber_whatever_its_name(name):
    torch.manual_seed(0)
    config = tiny_config(modalities=[ModalityConfig(name, input_size=6)])
    model = GPT(config).eval()
    patches = torch.randn(2, 10, 6)
    inputs = {name: patches, f"{name}_positions": torch.arange(10).expand(2, 10)}
    target = torch.randn(2, 10, 6) * 5
    outputs, loss = model(inputs, {name: target})
    assert outputs[name].shape == (2, 10, 6)
    expected = torch.nn.functional.huber_loss(outputs[name], target)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss.item() != pytest.approx(torch.nn.functional.mse_loss(outputs[name], target).item())


def test_two_modalities_concatenate_and_weight_losses():
    torch.manual_seed(0)
    mods = [
        ModalityConfig("images_aion", input_size=50, vocab_size=50, loss_weight=2.0),
        ModalityConfig("photometry", input_size=3, loss_weight=0.5),
    ]
    model = GPT(tiny_config(modalities=mods)).eval()
    tokens, phot = torch.randint(0, 50, (2, 10)), torch.randn(2, 4, 3)
    inputs = token_inputs(tokens) | {
        "photometry": phot,
        "photometry_positions": torch.arange(4).expand(2, 4),
    }
    targets = {"images_aion": tokens, "photometry": phot}
    outputs, loss = model(inputs, targets)
    assert outputs["images_aion"].shape == (2, 10, 50) and outputs["photometry"].shape == (2, 4, 3)
    ce = torch.nn.functional.cross_entropy(outputs["images_aion"].flatten(0, 1), tokens.flatten())
    huber = torch.nn.functional.huber_loss(outputs["photometry"], phot)
    assert loss.item() == pytest.approx((2.0 * ce + 0.5 * huber).item(), rel=1e-5)
    _, subset = model(inputs, {"photometry": phot})  # targets for a subset
    assert subset.item() == pytest.approx(0.5 * huber.item(), rel=1e-5)
    # photometry comes after the images in the sequence, so it sees them (causal attention)
    changed = token_inputs(torch.randint(0, 50, (2, 10))) | {
        "photometry": phot,
        "photometry_positions": torch.arange(4).expand(2, 4),
    }
    assert not torch.allclose(model(changed)[0]["photometry"], outputs["photometry"])


def test_causal_attention_hides_later_tokens(model):
    tokens = torch.randint(0, VOCAB, (1, 12))
    changed = tokens.clone()
    changed[0, 8] = (tokens[0, 8] + 1) % VOCAB
    before = model(token_inputs(tokens))[0]["images_aion"]
    after = model(token_inputs(changed))[0]["images_aion"]
    assert torch.equal(before[:, :8], after[:, :8])
    assert not torch.allclose(before[:, 8:], after[:, 8:])


def test_full_attention_sees_later_tokens():
    torch.manual_seed(0)
    model = GPT(tiny_config(attn_type="full")).eval()
    tokens = torch.randint(0, VOCAB, (1, 12))
    changed = tokens.clone()
    changed[0, 8] = (tokens[0, 8] + 1) % VOCAB
    before = model(token_inputs(tokens))[0]["images_aion"]
    after = model(token_inputs(changed))[0]["images_aion"]
    assert not torch.allclose(before[:, :8], after[:, :8])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_embd": 30, "n_head": 4}, "divisible by n_head"),
        ({"attn_type": "sparse"}, "attn_type"),
        ({"dropout": 1.5}, "dropout"),
        ({"modalities": [ModalityConfig("a", 5, vocab_size=5)] * 2}, "unique"),
        ({"modalities": []}, "at least one"),
        (
            {"modalities": [ModalityConfig("a", input_size=9, vocab_size=5)]},
            "input_size must equal",
        ),
        ({"modalities": [ModalityConfig("a.b", input_size=3)]}, "identifier"),
    ],
)
def test_invalid_configs_are_rejected_with_a_reason(overrides, message):
    with pytest.raises(ModelConfigError, match=message):
        GPT(tiny_config(**overrides))


def test_from_dict_rejects_unknown_settings():
    with pytest.raises(ModelConfigError, match="unknown GPTConfig settings"):
        GPTConfig.from_dict({"n_layers": 3})
    with pytest.raises(ModelConfigError, match="unknown ModalityConfig settings"):
        GPTConfig.from_dict({"modalities": [{"name": "x", "input_size": 2, "vocab": 3}]})


def test_bad_inputs_get_clear_errors(model):
    tokens = torch.randint(0, VOCAB, (2, 40))
    with pytest.raises(ModelInputError, match="block_size=32"):
        model(token_inputs(tokens))
    with pytest.raises(ModelInputError, match="images_aion_positions"):
        model({"images_aion": tokens[:, :8]})
    with pytest.raises(ModelInputError, match="must be some of"):
        model(token_inputs(tokens[:, :8]) | {"spectra": tokens})
    with pytest.raises(ModelInputError, match=r"in \[0, 10000\)"):
        model(token_inputs(torch.full((1, 4), VOCAB)))
    with pytest.raises(ModelInputError, match="integer tokens"):
        model(token_inputs(torch.zeros(1, 4)))
    with pytest.raises(ModelInputError, match="targets"):
        model(token_inputs(tokens[:, :8]), {"images_aion": tokens[:, :7]})


def test_greedy_generation_is_deterministic_and_consistent(model):
    prompt = torch.randint(0, VOCAB, (2, 5))
    first = model.generate(prompt, 6, temperature=0)
    assert first.shape == (2, 11) and torch.equal(first[:, :5], prompt)
    assert torch.equal(first, model.generate(prompt, 6, temperature=0))
    logits = model(token_inputs(first[:, :-1]))[0]["images_aion"]
    assert torch.equal(logits[:, 4:].argmax(-1), first[:, 5:])


def test_seeded_sampling_is_reproducible(model):
    prompt = torch.randint(0, VOCAB, (2, 3))
    a = model.generate(prompt, 8, generator=torch.Generator().manual_seed(7))
    b = model.generate(prompt, 8, generator=torch.Generator().manual_seed(7))
    c = model.generate(prompt, 8, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_top_k_restricts_to_the_most_likely_tokens(model):
    prompt = torch.randint(0, VOCAB, (1, 4))
    logits = model(token_inputs(prompt))[0]["images_aion"][0, -1]
    allowed = set(torch.topk(logits, 3).indices.tolist())
    gen = torch.Generator().manual_seed(0)
    draws = {
        int(model.generate(prompt, 1, top_k=3, temperature=5.0, generator=gen)[0, -1])
        for _ in range(40)
    }
    assert draws <= allowed and len(draws) > 1
    assert int(model.generate(prompt, 1, top_k=1, generator=gen)[0, -1]) == int(logits.argmax())


def test_generation_crops_to_block_size(model):
    prompt = torch.randint(0, VOCAB, (1, 30))
    out = model.generate(prompt, 5, temperature=0)
    assert out.shape == (1, 35)
    expected = model(token_inputs(out[:, -33:-1]))[0]["images_aion"][0, -1].argmax()
    assert int(out[0, -1]) == int(expected)


def test_embed_pools_final_hidden_states(model):
    tokens = torch.randint(0, VOCAB, (3, 10))
    both = model.embed(token_inputs(tokens), pooling="both")
    assert both["mean"].shape == both["last"].shape == (3, 32)
    hidden, _ = model.hidden_states(token_inputs(tokens))
    assert torch.allclose(model.embed(token_inputs(tokens)), hidden.mean(1))
    assert torch.allclose(model.embed(token_inputs(tokens), pooling="last"), hidden[:, -1])
    assert torch.allclose(both["mean"], hidden.mean(1))
    with pytest.raises(ModelInputError, match="pooling"):
        model.embed(token_inputs(tokens), pooling="max")


def test_optimizer_decays_matrices_only(model):
    optimizer = model.configure_optimizers(0.1, 3e-4, (0.9, 0.95), "cpu")
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(
        p.dim() < 2 for p in no_decay["params"]
    )
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert model.get_num_params() == model.get_num_params(False) - (VOCAB + 32) * 32


def test_training_step_reduces_loss():
    torch.manual_seed(0)
    model = GPT(tiny_config(modalities=[ModalityConfig("images_aion", 64, vocab_size=64)]))
    optimizer = model.configure_optimizers(0.0, 3e-3, (0.9, 0.95), "cpu")
    tokens = torch.randint(0, 64, (4, 16))
    inputs, targets = token_inputs(tokens[:, :-1]), {"images_aion": tokens[:, 1:]}
    losses = []
    for _ in range(40):
        _, loss = model(inputs, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_the_poolings_are_one_literal_each() -> None:
    from typing import get_args

    from astropt.finetune.config import FinetuneSettings
    from astropt.inference.pipeline import Pooling
    from astropt.pooling import POOLS, HeadPool, Pool

    assert POOLS == get_args(Pool) == ("mean", "last", "centre")
    assert set(get_args(Pooling)) == {*POOLS, "both"}  # /reconstruct's: the pools, and both
    assert FinetuneSettings.model_fields["pooling"].annotation is HeadPool
    assert set(get_args(HeadPool)) < set(POOLS)


def test_the_parameter_estimate_is_the_models_own_count() -> None:
    from astropt.config import ModelSettings, TrainConfig
    from astropt.model import GPT
    from astropt.model_budget import estimate_params
    from astropt.training.loop import gpt_config

    for shape in (
        {"n_layer": 1, "n_head": 2, "n_embd": 32},
        {"n_layer": 3, "n_head": 4, "n_embd": 64},
    ):
        config = TrainConfig(model=ModelSettings(**shape))
        model = GPT(gpt_config(config))
        counted = sum(p.numel() for p in model.parameters())
        assert 0.97 < estimate_params(config.model) / counted < 1.03, (shape, counted)
