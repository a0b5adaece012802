"""Warm start: a training run that begins from a checkpoint's weights (``init_from``).

Only the weights come from the checkpoint: the optimiser, the learning-rate schedule and the
step count start afresh at step 0, and the data order is the run's own. The model is the
checkpoint's: ``model`` fields a config leaves unset are taken from it, and ``codec`` too when
unset; a field that is set and differs is refused, every differing field named. At the start
the codec's fingerprint must equal the checkpoint's (tokens of two codecs never mix). A run
that already has its own ``checkpoints/last`` resumes from that and never reads the init
checkpoint again (it may since have been deleted).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from astropt.checkpoints import CheckpointError, load_checkpoint, read_meta
from astropt.codec import CodecInfo, check_same_codec
from astropt.config import ModelSettings, TrainConfig
from astropt.run_dir import CONFIG_FILE, WEIGHTS_FILE, RunDir

# What decides the weights and what they mean; dropout and mae_mask_ratio are training
# settings a warm start may change.
SHAPE_FIELDS = (
    "tokeniser",
    "n_layer",
    "n_head",
    "n_embd",
    "block_size",
    "bias",
    "attn_type",
    "objective",
)
AION_FIELDS = ("vocab_size",)
PATCH_FIELDS = ("patch_size", "patch_encoder", "patch_order")

ConfigT = TypeVar("ConfigT", bound=TrainConfig)


class HasCodecInfo(Protocol):
    """A loaded codec, or a codec's identity alone (training from tokens)."""

    @property
    def info(self) -> CodecInfo: ...


class InitMismatch(ValueError):
    """The config asks for a model or codec other than the init checkpoint's."""

    def __init__(self, conflicts: dict[str, tuple[Any, Any]], where: str):
        self.conflicts = conflicts
        listed = "; ".join(
            f"{name} is {mine!r} here but {theirs!r} in the checkpoint"
            for name, (mine, theirs) in conflicts.items()
        )
        super().__init__(
            f"init_from {where}: {listed}. Leave these fields unset to take the "
            "checkpoint's values, or train from scratch (no init_from)"
        )


def init_directory(init_from: str) -> Path:
    """The checkpoint directory ``init_from`` names ('shipped': the packaged model)."""
    if init_from == "shipped":
        from astropt.checkpoints.shipped import SHIPPED_MODEL_DIR

        return SHIPPED_MODEL_DIR
    return Path(init_from).expanduser()


def checkpoint_shape(meta: dict[str, Any]) -> dict[str, Any]:
    """The ``model`` settings a checkpoint's weights were made with (from its model_args)."""
    args = meta["model_args"]
    modality = (args.get("modalities") or [{}])[0]
    tokeniser = meta.get("tokeniser") or ("aion" if modality.get("vocab_size") else "patch")
    shape = {name: args[name] for name in SHAPE_FIELDS[1:] if name in args}
    shape["tokeniser"] = tokeniser
    if tokeniser == "aion":
        shape["vocab_size"] = modality.get("vocab_size")
    else:
        shape.update(
            patch_size=modality.get("patch_size"), patch_encoder=args.get("tokeniser", "aim")
        )
        order = ((meta.get("train_config") or {}).get("model") or {}).get("patch_order")
        if order:
            shape["patch_order"] = order
    return shape


def adopt_checkpoint(config: ConfigT, meta: dict[str, Any], where: str) -> ConfigT:
    """``config`` with the checkpoint's model shape (and codec) where it sets none.

    Raises :class:`InitMismatch` naming every field that is set and differs."""
    shape = checkpoint_shape(meta)
    model, given = config.model, config.model.model_fields_set
    conflicts = {
        f"model.{k}": (getattr(model, k), v)
        for k, v in shape.items()
        if k in given and getattr(model, k) != v
    }
    codec = (meta.get("codec") or {}).get("spec")
    if codec and "codec" in config.model_fields_set and config.codec != codec:
        conflicts["codec"] = (config.codec, codec)
    if conflicts:
        raise InitMismatch(conflicts, where)
    adopted = ModelSettings.model_validate({**{k: getattr(model, k) for k in given}, **shape})
    update: dict[str, Any] = {"model": adopted}
    if codec and "codec" not in config.model_fields_set:
        update["codec"] = codec
    return config.model_copy(update=update)


def with_init_shape(config: TrainConfig, resume: bool) -> TrainConfig:
    """The config a run trains with: the shape of the checkpoint it starts from (its own
    ``last`` when it resumes one, else ``init_from``'s)."""
    if not config.init_from:
        return config
    own = RunDir(Path(config.out_dir)).checkpoint("last")
    source = own if resume and (own / CONFIG_FILE).is_file() else init_directory(config.init_from)
    return adopt_checkpoint(config, read_meta(source), f"checkpoint {source}")


def load_init_weights(
    model: torch.nn.Module, config: TrainConfig, codec: HasCodecInfo | None
) -> dict[str, Any]:
    """Copy the ``init_from`` checkpoint's weights into ``model``; the record of what was loaded."""
    directory = init_directory(config.init_from or "")
    loaded, meta = load_checkpoint(directory, device="cpu")
    if codec is not None:
        check_same_codec(meta.get("codec") or {}, codec.info, f"init_from checkpoint {directory}")
    try:
        model.load_state_dict(loaded.state_dict(), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"init_from {directory}: its weights do not fit this model: {exc}"
        ) from exc
    return {
        "init_from": config.init_from,
        "path": str(directory.resolve()),
        "step": meta.get("step"),
        "best_val_loss": meta.get("best_val_loss"),
        "weights_sha256": _sha256(directory / WEIGHTS_FILE),
        "codec": meta.get("codec"),
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()
