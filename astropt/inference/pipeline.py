"""Reconstruction and embedding of flux cubes through a codec and an AstroPT model.

Modes:

- ``codec``: the codec round trip only (encode, decode); no model needed.
- ``predict`` (default): teacher-forced next-token prediction. The model reads the codec
  tokens ``[:, :-1]`` (positions 0..574, exactly as in training) and its argmax predicts
  tokens 1..575; the true first token is put back in front and the 576 tokens are decoded.
- ``complete``: the first ``keep_fraction`` of the 576 tokens are kept and the model samples
  the rest (``temperature``, ``top_k``; ``temperature=0`` is greedy). A ``seed`` makes it
  reproducible.

Metrics per image: ``token_accuracy`` (the model's tokens vs the codec's, over the tokens the
model produced; None in codec mode), ``mse`` (the main output vs the input's central 96x96
crop, over the bands given, in nanomaggies^2) and ``codec_mse`` (the round trip vs the input).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from astropt.codec import CodecHandle, check_same_codec
from astropt.constants import DEFAULT_BANDS, TOKENS_PER_IMAGE
from astropt.images import Cube, centre_crop
from astropt.pooling import DEFAULT_CENTRE, DEFAULT_POOL, PoolingError, check_pool
from astropt.tokenise import restore_first_token, shift_for_training
from astropt.torch_policy import autocast

if TYPE_CHECKING:
    from astropt.model import GPT

Mode = Literal["codec", "predict", "complete", "masked"]
Pooling = Literal["mean", "last", "centre", "both"]  # astropt.pooling's, and both = mean + last
MODES: tuple[str, ...] = ("codec", "predict", "complete", "masked")


class OptionsError(ValueError):
    """Inconsistent reconstruction options; the message names the option."""


@dataclass(frozen=True)
class ReconstructOptions:
    mode: Mode = "predict"
    keep_fraction: float = 0.5
    temperature: float = 1.0
    top_k: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise OptionsError(f"mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        if not 0.0 < self.keep_fraction <= 1.0:
            raise OptionsError(f"keep_fraction must be in (0, 1]; got {self.keep_fraction}")
        if not 0.0 <= self.temperature <= 100.0:
            raise OptionsError(
                f"temperature must be in [0, 100] (0 = greedy); got {self.temperature}"
            )
        if self.top_k is not None and self.top_k < 1:
            raise OptionsError(f"top_k must be >= 1; got {self.top_k}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise OptionsError(f"seed must be in [0, 2**63); got {self.seed}")

    @property
    def n_kept(self) -> int:
        return max(1, min(TOKENS_PER_IMAGE, round(self.keep_fraction * TOKENS_PER_IMAGE)))


@dataclass
class Reconstruction:
    """One image's result. Decoded fluxes are float32 ``[4, 96, 96]`` in DES g, r, i, z order."""

    mode: str
    bands: tuple[str, ...]  # the bands the input had
    original: np.ndarray  # the input's central 96x96 crop, [len(bands), 96, 96]
    codec: np.ndarray | None  # codec round trip (None for patch-token models)
    model: np.ndarray | None  # model output (None in codec mode)
    tokens: np.ndarray  # codec tokens [576]
    model_tokens: np.ndarray | None
    token_accuracy: float | None
    mse: float
    codec_mse: float
    warnings: list[str] = field(default_factory=list)

    @property
    def output(self) -> np.ndarray:
        """The main decoded image: the model's, or the round trip in codec mode."""
        output = self.codec if self.model is None else self.model
        assert output is not None  # codec mode has the round trip, the other modes the model's
        return output

    def metrics(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "token_accuracy": self.token_accuracy,
            "mse": self.mse,
            "codec_mse": self.codec_mse,
        }


def check_model_codec(model_codec: dict[str, Any] | None, codec: CodecHandle) -> None:
    """Refuse a model trained on another codec's tokens (raises ``astropt.codec.CodecError``)."""
    if model_codec is not None:
        check_same_codec(model_codec, codec.info, "the model checkpoint")


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def encode_cubes(cubes: Sequence[Cube], codec: CodecHandle) -> tuple[torch.Tensor, np.ndarray]:
    """Tokens ``Long[B, 576]`` and the stacked 96x96 crops; all cubes must share their bands."""
    if not cubes:
        raise ValueError("no images to encode")
    bands = cubes[0].bands
    if any(c.bands != bands for c in cubes):
        raise ValueError("cubes of one encode call must have the same bands")
    crops = np.stack([centre_crop(c.flux) for c in cubes]).astype(np.float32)
    return codec.encode(crops, bands), crops


def predict_tokens(
    model: GPT, tokens: torch.Tensor, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Teacher-forced argmax: ``[B, 576]`` codec tokens -> predicted ``[B, 576]`` (first token kept)."""
    device = _model_device(model)
    inputs, _ = shift_for_training(tokens.to(device))
    with torch.inference_mode(), autocast(device, dtype):
        outputs, _ = model(inputs)
    predicted = next(iter(outputs.values())).argmax(dim=-1).cpu()
    return restore_first_token(predicted, tokens[:, 0])


def complete_tokens(
    model: GPT, tokens: torch.Tensor, options: ReconstructOptions, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Keep ``options.n_kept`` leading tokens and sample the rest."""
    device = _model_device(model)
    n_new = TOKENS_PER_IMAGE - options.n_kept
    generator = None
    if options.seed is not None:
        generator = torch.Generator(device=device).manual_seed(options.seed)
    with torch.inference_mode(), autocast(device, dtype):
        full = model.generate(
            tokens[:, : options.n_kept].to(device),
            n_new,
            temperature=options.temperature,
            top_k=options.top_k,
            generator=generator,
        )
    return full.cpu()


def reconstruct(
    cubes: Sequence[Cube],
    codec: CodecHandle,
    model: GPT | None,
    options: ReconstructOptions = ReconstructOptions(),
    model_codec: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> list[Reconstruction]:
    """Reconstruct a batch of cubes (any bands/sizes; grouped by bands for the codec).

    ``dtype``: the model's autocast precision (default: bf16 on CUDA, float32 elsewhere).
    """
    if options.mode == "masked":
        raise OptionsError("mode 'masked' is for patch-token masked-autoencoder models")
    if options.mode != "codec":
        if model is None:
            raise OptionsError(f"mode {options.mode!r} needs a model; mode 'codec' needs none")
        check_model_codec(model_codec, codec)
    results: list[Reconstruction | None] = [None] * len(cubes)
    groups: dict[tuple[str, ...], list[int]] = {}
    for index, cube in enumerate(cubes):
        groups.setdefault(cube.bands, []).append(index)
    for indices in groups.values():
        group = [cubes[i] for i in indices]
        for i, result in zip(
            indices, _reconstruct_group(group, codec, model, options, dtype), strict=True
        ):
            results[i] = result
    return [r for r in results if r is not None]


def _reconstruct_group(
    cubes: list[Cube],
    codec: CodecHandle,
    model: GPT | None,
    options: ReconstructOptions,
    dtype: torch.dtype | None,
) -> list[Reconstruction]:
    tokens, crops = encode_cubes(cubes, codec)
    n = len(cubes)
    if options.mode == "codec":
        model_tokens, scored_from = None, 0
        decoded = codec.decode(tokens, DEFAULT_BANDS).numpy()
    else:
        assert model is not None  # reconstruct() refuses these modes without a model
        if options.mode == "predict":
            model_tokens, scored_from = predict_tokens(model, tokens, dtype), 1
        else:
            model_tokens, scored_from = (
                complete_tokens(model, tokens, options, dtype),
                options.n_kept,
            )
        decoded = codec.decode(torch.cat([tokens, model_tokens]), DEFAULT_BANDS).numpy()
    band_index = [DEFAULT_BANDS.index(b) for b in cubes[0].bands]
    results = []
    for i, cube in enumerate(cubes):
        round_trip = decoded[i]
        model_flux = None if model_tokens is None else decoded[n + i]
        accuracy = None
        if model_tokens is not None and scored_from < TOKENS_PER_IMAGE:
            hits = model_tokens[i, scored_from:] == tokens[i, scored_from:]
            accuracy = float(hits.float().mean())
        main = round_trip if model_flux is None else model_flux
        results.append(
            Reconstruction(
                mode=options.mode,
                bands=cube.bands,
                original=crops[i],
                codec=round_trip,
                model=model_flux,
                tokens=tokens[i].numpy(),
                model_tokens=None if model_tokens is None else model_tokens[i].numpy(),
                token_accuracy=accuracy,
                mse=_mse(main[band_index], crops[i]),
                codec_mse=_mse(round_trip[band_index], crops[i]),
                warnings=list(cube.warnings),
            )
        )
    return results


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def check_pooling(pooling: str, centre: int = DEFAULT_CENTRE) -> None:
    """An :class:`OptionsError` unless ``pooling`` is one of :data:`Pooling` (with a centre size
    that fits the token grid)."""
    if pooling == "both":
        return
    try:
        check_pool(pooling, centre)
    except PoolingError as exc:
        raise OptionsError(f"{exc} (or 'both': mean and last)") from exc


def token_inputs(tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """What an embedding reads of ``[B, 576]`` codec tokens: the 575 input tokens it was trained
    on (positions 0..574). ``/embed`` and fine-tuning both take their inputs from here."""
    return shift_for_training(tokens)[0]


def embed(
    cubes: Sequence[Cube],
    codec: CodecHandle,
    model: GPT,
    pooling: Pooling = DEFAULT_POOL,
    model_codec: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    centre: int = DEFAULT_CENTRE,
) -> list[dict[str, np.ndarray]]:
    """Per image ``{pooling: float32[C]}`` (``both``: ``mean`` and ``last``; ``centre``: the
    central ``centre x centre`` tokens).

    The model reads the 575 input tokens it was trained on (positions 0..574).
    """
    check_pooling(pooling, centre)
    check_model_codec(model_codec, codec)
    out: list[dict[str, np.ndarray] | None] = [None] * len(cubes)
    groups: dict[tuple[str, ...], list[int]] = {}
    for index, cube in enumerate(cubes):
        groups.setdefault(cube.bands, []).append(index)
    device = _model_device(model)
    for indices in groups.values():
        tokens, _ = encode_cubes([cubes[i] for i in indices], codec)
        inputs = token_inputs(tokens.to(device))
        with torch.inference_mode(), autocast(device, dtype):
            pooled = model.embed(inputs, pooling=pooling, centre=centre)
        if not isinstance(pooled, dict):
            pooled = {pooling: pooled}
        for row, i in enumerate(indices):
            out[i] = {k: v[row].float().cpu().numpy() for k, v in pooled.items()}
    return [o for o in out if o is not None]
