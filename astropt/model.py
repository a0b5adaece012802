"""AstroPT: a GPT over one or more modalities (nanoGPT style, upstream AstroPT parameter names).

Per modality: encoder ``encoders.<name>``, learned positions ``embedders.<name>``, head
``decoders.<name>``; modalities present are concatenated in config order through one stack of
pre-LayerNorm blocks. ``vocab_size > 0`` means discrete tokens (embedding, logits, cross-entropy),
``0`` continuous patches (MLP encoder, Huber loss): the loss follows vocab_size, never the name.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, cast

import torch
import torch.nn as nn
from torch.nn import functional as F

from astropt.pooling import DEFAULT_CENTRE, POOLS, PoolingError, pool_hidden

AION_MODALITY = "images_aion"
AION_VOCAB = 10_000


class ModelConfigError(ValueError):
    """The model configuration is inconsistent."""


class ModelInputError(ValueError):
    """The tensors given to the model do not match its configuration."""


@dataclass
class ModalityConfig:
    name: str
    input_size: int
    pos_input_size: int = 1
    patch_size: int = 1
    embed_pos: bool = True
    vocab_size: int = 0
    loss_weight: float = 1.0

    @property
    def discrete(self) -> bool:
        return self.vocab_size > 0

    @property
    def output_size(self) -> int:
        return self.vocab_size if self.discrete else self.input_size


@dataclass
class GPTConfig:
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    n_chan: int = 1
    dropout: float = 0.0
    bias: bool = False
    attn_type: Literal["causal", "full"] = "causal"
    tokeniser: Literal["aim", "affine"] = "aim"  # continuous encoder/decoder (upstream's name)
    objective: Literal["ar", "mae"] = "ar"
    mae_mask_ratio: float = 0.15
    modalities: list[ModalityConfig] = field(
        default_factory=lambda: [
            ModalityConfig(AION_MODALITY, input_size=AION_VOCAB, vocab_size=AION_VOCAB)
        ]
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> GPTConfig:
        values = dict(raw)
        if "modalities" in values:
            values["modalities"] = [
                m if isinstance(m, ModalityConfig) else _from_dict(ModalityConfig, m)
                for m in values["modalities"]
            ]
        return _from_dict(cls, values)

    def modality(self, name: str) -> ModalityConfig:
        for modality in self.modalities:
            if modality.name == name:
                return modality
        raise ModelInputError(
            f"unknown modality {name!r}; this model has {[m.name for m in self.modalities]}"
        )

    def validate(self) -> None:
        problems: list[str] = []
        if self.n_layer < 1 or self.n_head < 1 or self.n_embd < 1 or self.block_size < 1:
            problems.append("n_layer, n_head, n_embd and block_size must all be at least 1")
        elif self.n_embd % self.n_head:
            problems.append(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
                f"e.g. n_embd={self.n_head * max(1, round(self.n_embd / self.n_head))}"
            )
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if self.attn_type not in ("causal", "full"):
            problems.append(f"attn_type must be 'causal' or 'full', got {self.attn_type!r}")
        if self.tokeniser not in ("aim", "affine"):
            problems.append(f"tokeniser must be 'aim' or 'affine', got {self.tokeniser!r}")
        if self.objective not in ("ar", "mae"):
            problems.append(f"objective must be 'ar' or 'mae', got {self.objective!r}")
        if self.objective == "mae" and self.attn_type != "full":
            problems.append("objective 'mae' is bidirectional: set attn_type='full'")
        if not 0.0 < self.mae_mask_ratio < 1.0:
            problems.append(f"mae_mask_ratio must be in (0, 1), got {self.mae_mask_ratio}")
        names = [m.name for m in self.modalities]
        if not names or len(set(names)) != len(names):
            problems.append(f"modality names must be unique and at least one; got {names}")
        for m in self.modalities:
            if not m.name or "." in m.name or not m.name.isidentifier():
                problems.append(f"modality name {m.name!r} must be a Python identifier")
            if m.vocab_size < 0 or m.input_size < 1 or m.pos_input_size < 1:
                problems.append(f"modality {m.name!r}: sizes must be positive")
            if m.vocab_size > 0 and m.input_size != m.vocab_size:
                problems.append(
                    f"modality {m.name!r} is discrete (vocab_size={m.vocab_size}) so input_size "
                    f"must equal vocab_size, got input_size={m.input_size}"
                )
            if m.loss_weight < 0:
                problems.append(f"modality {m.name!r}: loss_weight must be >= 0")
        if problems:
            raise ModelConfigError("invalid model config: " + "; ".join(problems))


def _from_dict(cls: type, raw: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ModelConfigError(f"unknown {cls.__name__} settings {unknown}; known: {sorted(known)}")
    return cls(**raw)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head, self.dropout = config.n_head, config.dropout
        self.is_causal = config.attn_type == "causal"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=self.is_causal
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class TwoLayerMLP(nn.Module):
    """Linear -> GELU(tanh) -> Linear: continuous patch encoders and every output head."""

    def __init__(self, n_in: int, n_hidden: int, n_out: int, bias: bool):
        super().__init__()
        self.c_fc = nn.Linear(n_in, n_hidden, bias=bias)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(n_hidden, n_out, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class MLP(TwoLayerMLP):
    def __init__(self, config: GPTConfig):
        super().__init__(config.n_embd, 4 * config.n_embd, config.n_embd, config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(super().forward(x))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=1e-5, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=1e-5, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class AffineMap(nn.Module):
    """One Linear (upstream's "affine" patch tokeniser), named ``c_fc`` as upstream does."""

    def __init__(self, n_in: int, n_out: int, bias: bool):
        super().__init__()
        self.c_fc = nn.Linear(n_in, n_out, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_fc(x)


def patch_encoder(m: ModalityConfig, config: GPTConfig) -> nn.Module:
    C = config.n_embd
    if config.tokeniser == "affine":
        return AffineMap(m.input_size, C, config.bias)
    return TwoLayerMLP(m.input_size, 4 * C, C, config.bias)


def output_head(m: ModalityConfig, config: GPTConfig) -> nn.Module:
    C = config.n_embd
    if not m.discrete and config.tokeniser == "affine":
        return AffineMap(C, m.output_size, config.bias)
    return TwoLayerMLP(C, 4 * C, m.output_size, config.bias)


class TokenEncoder(nn.Module):
    """Discrete tokens ``Long[B, T]`` -> ``[B, T, C]``."""

    def __init__(self, modality: ModalityConfig, config: GPTConfig):
        super().__init__()
        self.wpe = nn.Embedding(modality.vocab_size, config.n_embd)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.wpe(tokens)


class PositionEmbedder(nn.Module):
    """Learned positions: ``Long[B, T]`` indices, or ``Float[B, T, pos_input_size]`` values
    through a linear map when ``embed_pos`` is off."""

    def __init__(self, modality: ModalityConfig, config: GPTConfig):
        super().__init__()
        self.embed_pos = modality.embed_pos
        self.wpe: nn.Embedding | nn.Linear
        if self.embed_pos:
            self.wpe = nn.Embedding(config.block_size, config.n_embd)
        else:
            self.wpe = nn.Linear(modality.pos_input_size, config.n_embd, bias=config.bias)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        if self.embed_pos:
            return self.wpe(positions)
        values = positions.unsqueeze(-1) if positions.dim() == 2 else positions
        return self.wpe(values.to(self.wpe.weight.dtype))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        config.validate()
        self.config = config
        C, mods = config.n_embd, config.modalities
        self.encoders = nn.ModuleDict(
            {
                m.name: TokenEncoder(m, config) if m.discrete else patch_encoder(m, config)
                for m in mods
            }
        )
        self.embedders = nn.ModuleDict({m.name: PositionEmbedder(m, config) for m in mods})
        self.transformer = nn.ModuleDict(
            dict(
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, eps=1e-5, bias=config.bias),
            )
        )
        self.decoders = nn.ModuleDict({m.name: output_head(m, config) for m in mods})
        # MAE: one learned embedding stands in for every masked position (AR models have none).
        self.mask_token = nn.Parameter(torch.zeros(C)) if config.objective == "mae" else None
        self.apply(self._init_weights)
        if self.mask_token is not None:
            nn.init.normal_(self.mask_token, mean=0.0, std=0.02)
        for name, param in self.named_parameters():  # residual projections: GPT-2 scaling
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; ``non_embedding`` leaves out token and position lookup tables."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Embedding))
        return total

    def _checked_modalities(self, inputs: dict[str, torch.Tensor]) -> list[ModalityConfig]:
        """The modalities in ``inputs`` (config order), after checking shapes, dtypes, ranges."""
        names = [m.name for m in self.config.modalities]
        allowed = set(names) | {f"{n}_positions" for n in names}
        if set(inputs) - allowed or not set(inputs) & set(names):
            raise ModelInputError(f"inputs must be some of {sorted(allowed)}; got {sorted(inputs)}")
        present = [m for m in self.config.modalities if m.name in inputs]
        total, block_size = 0, self.config.block_size
        for m in present:
            values, pos = inputs[m.name], inputs.get(f"{m.name}_positions")
            shape = tuple(values.shape)
            if pos is None or tuple(pos.shape[:2]) != shape[:2]:
                raise ModelInputError(f"{m.name}_positions of shape {shape[:2]} is required")
            if m.discrete and (values.dim() != 2 or values.is_floating_point()):
                raise ModelInputError(f"{m.name!r} takes integer tokens [B, T], got {shape}")
            if not m.discrete and (values.dim() != 3 or shape[-1] != m.input_size):
                raise ModelInputError(
                    f"{m.name!r} takes patches [B, T, {m.input_size}], got {shape}"
                )
            total += shape[1]
        if total > block_size or len({inputs[m.name].shape[0] for m in present}) > 1:
            lengths = ", ".join(f"{m.name}={tuple(inputs[m.name].shape[:2])}" for m in present)
            raise ModelInputError(
                f"inputs [B, T] ({lengths}) must share B and fit block_size={block_size} in total; "
                "use shorter inputs or a model with a larger block_size"
            )
        if torch.compiler.is_compiling():  # value checks need a host sync; skip inside graphs
            return present
        for m in present:
            values, pos = inputs[m.name], inputs[f"{m.name}_positions"]
            if values.numel() and m.discrete and (values.min() < 0 or values.max() >= m.vocab_size):
                raise ModelInputError(f"{m.name!r} tokens must be in [0, {m.vocab_size})")
            if pos.numel() and m.embed_pos and (pos.min() < 0 or pos.max() >= block_size):
                raise ModelInputError(f"{m.name}_positions must be in [0, {block_size})")
        return present

    def hidden_states(
        self,
        inputs: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor] | None = None,
        layer: int = -1,
    ) -> tuple[torch.Tensor, list[int]]:
        """Hidden states ``[B, T_total, C]`` and the sequence length of each modality present,
        in config order. ``masks`` (MAE): ``Bool[B, T]`` per modality, True where the input is
        replaced by the learned mask token.

        ``layer`` indexes the blocks like a Python list: ``-1`` (the default) is the last
        block's output after ``ln_f`` (what the heads read); any other block's output is the
        raw residual stream, and the blocks above it are not run.
        """
        n_layer = len(cast(nn.ModuleList, self.transformer.h))
        if not -n_layer <= layer < n_layer:
            raise ModelInputError(f"layer must be in [{-n_layer}, {n_layer - 1}], got {layer}")
        states, lengths = self.layer_states(inputs, upto=layer % n_layer, masks=masks)
        return states[-1], lengths

    def layer_states(
        self,
        inputs: dict[str, torch.Tensor],
        upto: int | None = None,
        masks: dict[str, torch.Tensor] | None = None,
    ) -> tuple[list[torch.Tensor], list[int]]:
        """The output of every block ``0..upto`` (default: all) from one pass; the last
        block's after ``ln_f``. Lengths and ``masks`` as in :meth:`hidden_states`."""
        blocks = cast(
            nn.ModuleList, self.transformer.h
        )  # ModuleDict entries type as Tensor | Module
        n_layer = len(blocks)
        upto = n_layer - 1 if upto is None else upto
        present = self._checked_modalities(inputs)
        masks = masks or {}
        if masks and self.mask_token is None:
            raise ModelInputError("masks need an MAE model (objective='mae')")
        pieces = []
        for m in present:
            encoded = self.encoders[m.name](inputs[m.name])
            mask = masks.get(m.name)
            if mask is not None:
                if tuple(mask.shape) != tuple(encoded.shape[:2]):
                    raise ModelInputError(
                        f"mask for {m.name!r} must have shape {tuple(encoded.shape[:2])}"
                    )
                assert self.mask_token is not None  # masks without one were refused above
                encoded = torch.where(
                    mask.unsqueeze(-1), self.mask_token.to(encoded.dtype), encoded
                )
            pieces.append(encoded + self.embedders[m.name](inputs[f"{m.name}_positions"]))
        x = cast(nn.Dropout, self.transformer.drop)(torch.cat(pieces, dim=1))
        states = []
        for block in blocks[: upto + 1]:
            x = block(x)
            states.append(x)
        if upto == n_layer - 1:
            states[-1] = cast(nn.LayerNorm, self.transformer.ln_f)(x)
        return states, [p.shape[1] for p in pieces]

    def forward(
        self,
        inputs: dict[str, torch.Tensor],
        targets: dict[str, torch.Tensor] | None = None,
        masks: dict[str, torch.Tensor] | None = None,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """``masks`` (MAE) hide inputs behind the mask token; the loss then covers masked
        positions only. AR targets are the inputs shifted by one; MAE targets the inputs."""
        hidden, lengths = self.hidden_states(inputs, masks)
        names = [m.name for m in self.config.modalities if m.name in inputs]
        outputs = {
            name: self.decoders[name](chunk)
            for name, chunk in zip(names, hidden.split(lengths, dim=1), strict=True)
        }
        if targets is None:
            return outputs, None
        return outputs, self._loss(outputs, targets, masks or {})

    def _loss(
        self,
        outputs: dict[str, torch.Tensor],
        targets: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        if not targets or set(targets) - set(outputs):
            raise ModelInputError(f"targets {sorted(targets)} must be some of {sorted(outputs)}")
        loss = None
        for name, target in targets.items():
            m, pred = self.config.modality(name), outputs[name]
            expected = tuple(pred.shape[:2] if m.discrete else pred.shape)
            if tuple(target.shape) != expected:
                raise ModelInputError(f"targets for {name!r} must have shape {expected}")
            mask = masks.get(name)
            if m.discrete:  # -1 marks positions to ignore
                if mask is not None:
                    target = target.masked_fill(~mask, -1)
                part = F.cross_entropy(
                    pred.flatten(0, 1).float(), target.flatten(), ignore_index=-1
                )
            elif mask is not None:
                part = F.huber_loss(pred[mask].float(), target[mask].float())
            else:
                part = F.huber_loss(pred.float(), target.float())
            loss = m.loss_weight * part if loss is None else loss + m.loss_weight * part
        assert loss is not None  # targets is not empty
        return loss

    def configure_optimizers(
        self,
        weight_decay: float,
        learning_rate: float,
        betas: tuple[float, float],
        device_type: str,
    ) -> torch.optim.AdamW:
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        fused = device_type == "cuda"  # one fused kernel per step on GPU
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=fused)

    @torch.no_grad()
    def generate(
        self,
        tokens: torch.Tensor,
        n_new: int,
        *,
        modality: str = AION_MODALITY,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Extend ``tokens`` ``Long[B, T0]`` by ``n_new`` sampled tokens (temperature 0: greedy)."""
        m = self.config.modality(modality)
        if not m.discrete:
            raise ModelInputError(f"generate needs a discrete modality; {modality!r} is continuous")
        if n_new < 0 or temperature < 0 or (top_k is not None and top_k < 1):
            raise ModelInputError("n_new and temperature must be >= 0 and top_k >= 1")
        if tokens.dim() != 2 or tokens.shape[1] == 0:
            raise ModelInputError(f"tokens must be [B, T0] with T0 >= 1, got {tuple(tokens.shape)}")
        for _ in range(n_new):
            window = tokens[:, -self.config.block_size :]
            positions = torch.arange(window.shape[1], device=window.device).expand_as(window)
            outputs, _ = self({modality: window, f"{modality}_positions": positions})
            logits = outputs[modality][:, -1, :].float()
            if temperature == 0:
                next_token = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, [-1]]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = F.softmax(logits, dim=-1)
                next_token = torch.multinomial(probs, 1, generator=generator)
            tokens = torch.cat([tokens, next_token.to(tokens.dtype)], dim=1)
        return tokens

    @torch.no_grad()
    def embed(
        self,
        inputs: dict[str, torch.Tensor],
        *,
        pooling: str = "mean",
        layer: int = -1,
        centre: int = DEFAULT_CENTRE,
        positions: list[int] | None = None,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Pooled hidden states ``Float[B, C]`` of block ``layer`` (see :mod:`astropt.pooling`;
        ``both``: ``{"mean", "last"}``; ``positions``: what ``centre`` averages, where the inputs
        are not AION tokens)."""
        return self.pooled(inputs, pooling=pooling, layer=layer, centre=centre, positions=positions)

    def pooled(
        self,
        inputs: dict[str, torch.Tensor],
        *,
        pooling: str = "mean",
        layer: int = -1,
        centre: int = DEFAULT_CENTRE,
        positions: list[int] | None = None,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """:meth:`embed` with gradients (fine-tuning trains through it): the one pooling."""
        if pooling != "both" and pooling not in POOLS:
            raise ModelInputError(
                f"pooling must be one of {', '.join(POOLS)} or 'both', got {pooling!r}"
            )
        hidden, _ = self.hidden_states(inputs, layer=layer)
        if pooling == "both":
            return {"mean": pool_hidden(hidden, "mean"), "last": pool_hidden(hidden, "last")}
        try:
            return pool_hidden(hidden, pooling, centre, positions)
        except PoolingError as exc:
            raise ModelInputError(str(exc)) from exc
