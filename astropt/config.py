"""Typed configuration for a training run.

One object, :class:`TrainConfig`, is used by the CLI (``astropt train``), the job
service (``POST /jobs``) and the tests. Unknown fields are errors, and
inconsistent combinations fail at construction with a message naming the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from astropt.constants import AION_VOCAB_SIZE, DEFAULT_BANDS, TOKENS_PER_IMAGE
from astropt.pooling import DEFAULT_CENTRE, DEFAULT_POOL, Pool


class _Strict(BaseModel):
    # allow_inf_nan=False: Infinity/NaN (or "inf" strings) are never a sensible setting.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ModelSettings(_Strict):
    """Transformer shape. Defaults are a small CPU-friendly model."""

    n_layer: int = Field(4, ge=1, le=96, description="Transformer blocks.")
    n_head: int = Field(4, ge=1, le=128, description="Attention heads; must divide n_embd.")
    n_embd: int = Field(128, ge=8, le=16384, description="Width of the residual stream.")
    block_size: int = Field(1024, ge=2, description="Longest sequence the model accepts.")
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout after embeddings, attention and MLPs."
    )
    bias: bool = Field(False, description="Biases in linear layers and LayerNorms (upstream: off).")
    attn_type: Literal["causal", "full"] = Field(
        "causal", description="Causal (autoregressive) or full attention."
    )
    vocab_size: int = Field(AION_VOCAB_SIZE, description="Codec vocabulary (AION: 10,000).")
    tokeniser: Literal["aion", "patch"] = Field(
        "aion",
        description="Image tokens: AION codec tokens or continuous flux patches (upstream 'images').",
    )
    objective: Literal["ar", "mae"] = Field(
        "ar",
        description="Autoregressive next token, or masked autoencoder (needs attn_type 'full').",
    )
    mae_mask_ratio: float = Field(
        0.15, gt=0.0, lt=1.0, description="Share of positions masked per image (objective mae)."
    )
    patch_size: int = Field(
        16,
        ge=2,
        le=96,
        description="Patch side in pixels (tokeniser patch); must divide the 96-pixel crop.",
    )
    patch_encoder: Literal["aim", "affine"] = Field(
        "aim", description="Patch encoder/decoder: Linear-GELU-Linear (aim) or one Linear (affine)."
    )
    patch_order: Literal["raster", "spiral"] = Field(
        "raster", description="Order of the patch grid (spiral: centre outwards)."
    )

    @property
    def n_positions(self) -> int:
        """Tokens per image: 576 AION tokens, or (96 / patch_size)^2 patches."""
        return TOKENS_PER_IMAGE if self.tokeniser == "aion" else (96 // self.patch_size) ** 2

    @model_validator(mode="after")
    def _check_shape(self) -> ModelSettings:
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
                f"try n_embd={self.n_head * max(1, round(self.n_embd / self.n_head))}"
            )
        if self.tokeniser == "patch" and 96 % self.patch_size:
            raise ValueError(
                f"patch_size ({self.patch_size}) must divide the 96-pixel crop (e.g. 8, 12, 16, 24)"
            )
        if self.objective == "mae" and self.attn_type != "full":
            raise ValueError("objective 'mae' is bidirectional: set model.attn_type to 'full'")
        seen = self.n_positions - (1 if self.objective == "ar" else 0)
        if self.block_size < seen:
            raise ValueError(
                f"block_size ({self.block_size}) is too small: an image is {self.n_positions} "
                f"tokens, so the model sees {seen} per step; use block_size >= {seen}"
            )
        if self.tokeniser == "aion" and self.vocab_size != AION_VOCAB_SIZE:
            raise ValueError(
                f"vocab_size ({self.vocab_size}) must equal the AION codec's "
                f"{AION_VOCAB_SIZE} codes: this trainer learns AION tokens (continuous "
                "patches, vocab_size 0, are supported by astropt.model.GPT directly)"
            )
        return self


class DataSettings(_Strict):
    """Where galaxy images come from.

    ``mock``: the embedded GalSim mock (generated on first use into ``path`` or the
    run's data cache). ``hf``: a Hugging Face dataset (streamed by default).
    ``local``: a directory of FITS/``.npy`` cubes or Parquet/Arrow files.
    ``tokens``: a token data set made by ``astropt tokenise`` (``path``; AION models only):
    training reads its tokens and loads no codec (except to draw validation images).
    """

    source: Literal["mock", "hf", "local", "tokens"] = Field(
        "mock", description="mock, hf, local or tokens (see above)."
    )
    path: str | None = Field(
        None,
        description="Local directory/file (local), mock cache dir, or the token data set (tokens).",
    )
    job_id: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{1,32}$",
        description="Source tokens, in a job "
        "of the service: the tokenise job whose data set to read (the service sets path).",
    )
    hf_dataset: str = Field(
        "Smith42/legacysurvey_hsc_crossmatched", description="Hugging Face dataset id (source hf)."
    )
    hf_split: str = Field("train", description="Dataset split to read (source hf).")
    image_column: str = Field(
        "legacysurvey_image", description="Column holding the image dict (renamed to 'image')."
    )
    streaming: bool = Field(True, description="Stream the hf dataset instead of downloading it.")
    n_mock: int = Field(2048, ge=8, description="Galaxies in the mock data set.")
    mock_seed: int = Field(
        0,
        ge=0,
        le=2**32 - 1,
        description="Seed of the mock data set (galaxy i is fixed by seed and i).",
    )
    val_fraction: float = Field(
        0.05,
        gt=0.0,
        lt=0.5,
        description="Share of galaxies held out for validation (by object id, no leakage).",
    )
    shuffle_buffer: int = Field(1000, ge=1, description="Shuffle buffer for streamed sources.")
    bands: tuple[str, ...] = Field(
        DEFAULT_BANDS, description="Band names of the 4 flux planes, as the codec knows them."
    )
    cache_tokens: bool = Field(
        True,
        description="Tokenise once per codec and reuse the tokens: finite sources in the token "
        "cache; streamed hf sources into a token data set before the first step, which every epoch "
        "and later runs on the same source and codec read (false: stream and tokenise every epoch).",
    )

    @model_validator(mode="after")
    def _check_source(self) -> DataSettings:
        if self.source == "local" and not self.path:
            raise ValueError("data.path is required when data.source is 'local'")
        if self.source == "tokens" and not (self.path or self.job_id):
            raise ValueError(
                "data.source 'tokens' needs data.path (a token data set) or, in a job of the "
                "service, data.job_id (the tokenise job that made it)"
            )
        if self.job_id is not None and self.source != "tokens":
            raise ValueError(
                "data.job_id names a tokenise job's data set: it needs data.source 'tokens'"
            )
        if self.source == "local":
            assert self.path  # required above
            if not Path(self.path).expanduser().exists():
                raise ValueError(f"data.path does not exist: {self.path}")
        if len(self.bands) != 4:
            raise ValueError(f"data.bands must name 4 bands (g, r, i, z), got {list(self.bands)}")
        return self


class OptimSettings(_Strict):
    learning_rate: float = Field(6e-4, gt=0, description="Peak AdamW learning rate.")
    min_lr: float | None = Field(None, ge=0, description="Defaults to learning_rate / 10.")
    weight_decay: float = Field(
        0.1, ge=0, description="AdamW weight decay (matrices only; not biases/LayerNorms)."
    )
    beta1: float = Field(0.9, gt=0, lt=1, description="AdamW beta1.")
    beta2: float = Field(0.95, gt=0, lt=1, description="AdamW beta2.")
    grad_clip: float = Field(1.0, ge=0, description="0 disables clipping.")
    warmup_iters: int = Field(50, ge=0, description="Linear warm-up iterations.")
    lr_decay_iters: int | None = Field(None, ge=1, description="Defaults to max_iters.")


DEFAULT_PROBE_LABELS = ("mag_r", "g_r", "disk_hlr_arcsec", "disk_q", "bulge_fraction")
PROBE_LABEL_PATTERN = (
    r"^[A-Za-z][A-Za-z0-9_.]{0,22}$"  # a curve is "probe_r2/<label>", 32 characters at most
)


class LiveProbeSettings(_Strict):
    """Live linear probe (optional; off unless the section is given, e.g. ``live_probe: {}``).

    At every ``every``-th evaluation the model embeds the first ``n_galaxies`` validation
    galaxies (never trained on) and a ridge regression with ``folds``-fold cross-validation
    reads each label off the embeddings; the R^2 per label is reported as ``probe_r2/<label>``
    beside the losses. Labels are scalar columns of the data source (the mock's truth
    parameters, a local table's catalogue columns). Costs about 2% of a CPU run at the
    defaults and eval_interval 25 (docs/science.md).
    """

    labels: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PROBE_LABELS),
        min_length=1,
        max_length=16,
        description="Scalar columns of the data source to probe (mock: truth parameters, "
        "magnitudes mag_<b> and colours g_r, r_i, i_z).",
    )
    n_galaxies: int = Field(
        128,
        ge=10,
        le=100_000,
        description="Validation galaxies embedded "
        "(the first N of the val split; fewer if the split is smaller).",
    )
    every: int = Field(
        1,
        ge=1,
        description="Probe at every N-th evaluation: steps that are multiples of "
        "N x eval_interval (step 0, the untrained model, included) and the last step.",
    )
    pool: Pool = Field(DEFAULT_POOL, description="Pooling of the hidden states (astropt.pooling).")
    centre: int = Field(DEFAULT_CENTRE, ge=1, le=23, description="k of the centre pool.")
    layer: int = Field(
        -1, ge=-96, le=95, description="Block whose output is pooled (-1: the last)."
    )
    folds: int = Field(5, ge=2, le=10, description="Cross-validation folds of the ridge probe.")
    alpha: float = Field(100.0, gt=0, le=1e8, description="Ridge regularisation (lambda).")

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, labels: list[str]) -> list[str]:
        bad = [label for label in labels if not re.match(PROBE_LABEL_PATTERN, label)]
        if bad:
            raise ValueError(
                f"live_probe.labels {bad}: a label is a column name of letters, digits, '_' "
                "and '.', 23 characters at most, starting with a letter"
            )
        return labels

    @model_validator(mode="after")
    def _check_size(self) -> LiveProbeSettings:
        if self.n_galaxies < 2 * self.folds:
            raise ValueError(
                f"live_probe.n_galaxies ({self.n_galaxies}) must be at least 2 x folds ({self.folds})"
            )
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("live_probe.labels names a label twice")
        return self


class TrainConfig(_Strict):
    """Everything a training run needs. Serialises to/from YAML and JSON."""

    model: ModelSettings = Field(default_factory=ModelSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    optim: OptimSettings = Field(default_factory=OptimSettings)
    init_from: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="Warm start: a checkpoint directory (or 'shipped') whose weights the run starts "
        "from, with a fresh optimiser and schedule from step 0. model fields left unset (and codec, "
        "when unset) are taken from the checkpoint; set ones must match it. None: random weights.",
    )
    codec: str = Field(
        "default",
        description="Codec spec: 'default', 'shipped', a hub id, a local directory, "
        "or 'random:SEED' (untrained, for tests).",
    )
    out_dir: str = Field(
        "runs/default", description="Run directory: loss.csv/png, val_images/, checkpoints/."
    )
    batch_size: int = Field(8, ge=1, description="Images per micro-batch (per process).")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimiser step.")
    max_iters: int = Field(
        500, ge=1, description="Optimiser steps in total (a resumed run continues to this)."
    )
    eval_interval: int = Field(
        100, ge=1, description="Evaluate (and maybe save best) every N steps."
    )
    eval_iters: int = Field(
        10, ge=1, description="Batches per evaluation (a fixed set, so evaluations compare)."
    )
    log_interval: int = Field(
        10, ge=1, description="Record train loss, lr and tokens/s every N steps."
    )
    checkpoint_interval: int = Field(0, ge=0, description="Also checkpoint every N iters; 0 = off.")
    n_val_images: int = Field(
        4, ge=0, le=16, description="Validation galaxies drawn at each evaluation (0 = none)."
    )
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|cuda(:\d{1,2})?|mps)$",
        description="'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="auto: bf16 autocast on GPUs that support it, fp16 + GradScaler otherwise, fp32 on CPU.",
    )
    compile: Literal["auto", "on", "off"] = Field(
        "auto", description="torch.compile; auto = on for CUDA."
    )
    seed: int = Field(
        1337, ge=0, le=2**32 - 1, description="Seed of initialisation, batch order and dropout."
    )
    num_threads: int = Field(0, ge=0, description="CPU threads for torch; 0 = torch default.")
    live_probe: LiveProbeSettings | None = Field(
        None,
        description="Linear probes of the data source's "
        "labels at evaluations (see the section below); None = off.",
    )

    @field_validator("codec")
    @classmethod
    def _check_codec(cls, spec: str) -> str:
        from astropt.codec import resolve

        if spec != "default":  # 'default' probes the hub; the rest resolve without I/O
            resolve(spec)
        return spec

    @model_validator(mode="after")
    def _check_iters(self) -> TrainConfig:
        if (
            self.optim.lr_decay_iters is not None
            and self.optim.lr_decay_iters < self.optim.warmup_iters
        ):
            raise ValueError("optim.lr_decay_iters must be >= optim.warmup_iters")
        if self.data.source == "tokens" and self.model.tokeniser != "aion":
            raise ValueError(
                "data.source 'tokens' holds AION codec tokens: it trains model.tokeniser 'aion' only"
            )
        if (
            self.data.source == "tokens"
            and self.data.path
            and Path(self.out_dir).expanduser().resolve()
            == Path(self.data.path).expanduser().resolve()
        ):
            raise ValueError("out_dir is the token data set (data.path): write the run elsewhere")
        if self.live_probe is not None:
            if self.data.source not in ("mock", "local"):
                raise ValueError(
                    "live_probe reads labels from a finite table: use data.source 'mock' or 'local'"
                )
            if self.model.tokeniser == "aion" and not self.data.cache_tokens:
                raise ValueError(
                    "live_probe embeds the cached tokens of the validation split: set "
                    "data.cache_tokens true"
                )
            if not -self.model.n_layer <= self.live_probe.layer < self.model.n_layer:
                raise ValueError(
                    f"live_probe.layer ({self.live_probe.layer}) must be in "
                    f"[{-self.model.n_layer}, {self.model.n_layer - 1}] for model.n_layer {self.model.n_layer}"
                )
        return self

    @property
    def min_lr(self) -> float:
        o = self.optim
        return o.min_lr if o.min_lr is not None else o.learning_rate / 10

    @property
    def lr_decay_iters(self) -> int:
        return self.optim.lr_decay_iters or self.max_iters

    # -- (de)serialisation -------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        return cls.from_dict(raw, overrides)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], overrides: list[str] | None = None) -> TrainConfig:
        raw = _deep_copy(raw)
        for item in overrides or []:
            apply_override(raw, item)
        return cls.model_validate(raw)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply ``a.b.c=value`` to a nested dict; the value is parsed as YAML."""
    if "=" not in item:
        raise ValueError(
            f"override {item!r} must look like key=value (e.g. optim.learning_rate=1e-3)"
        )
    key, _, value = item.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ValueError(f"override {item!r} has an empty key")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"override {item!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(value)


def _deep_copy(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in raw.items()}
