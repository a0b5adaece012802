"""One-off conversion of upstream AstroPT checkpoints (``scripts/train_aion.py``).

This is the ONE place in the project that unpickles: upstream checkpoints are ``torch.save``
dicts holding pickled ``astropt.model.ModalityConfig`` / ``ModalityRegistry`` objects. Unpickling
can run arbitrary code, so convert only files from a trusted source; the result is a normal
safetensors + JSON checkpoint directory.
"""

from __future__ import annotations

import pickle
import types
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from astropt.checkpoints.io import (
    CheckpointError,
    json_safe,
    save_checkpoint,
    strip_wrapper_prefixes,
)
from astropt.model import GPT, GPTConfig, ModalityConfig, ModelConfigError

UPSTREAM_CODEC = "polymathic-ai/aion-base"
UNPICKLE_WARNING = (
    "import-upstream unpickles {path}: unpickling can run arbitrary code, so only convert "
    "checkpoints from a source you trust"
)
_GPT_ARGS = {f.name for f in fields(GPTConfig)} - {"modalities"}
_MODALITY_ARGS = [f.name for f in fields(ModalityConfig)]


class UpstreamUnpickleWarning(UserWarning):
    """Raised as a warning every time an upstream checkpoint is unpickled."""


class UpstreamObject:
    """Stand-in for upstream classes: absorbs whatever state the pickle carries."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.args = args
        self.__dict__.update(kwargs)

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (__dict__, __slots__ values)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.state = state


class _UpstreamUnpickler(pickle.Unpickler):
    """Maps the upstream ``astropt.*`` classes onto :class:`UpstreamObject` (our own
    ``astropt`` package is a different code base with the same name)."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "astropt" or module.startswith("astropt."):
            return type(name, (UpstreamObject,), {"__module__": f"upstream.{module}"})
        return super().find_class(module, name)


def _pickle_module() -> types.ModuleType:
    module = types.ModuleType("astropt_upstream_pickle")
    module.Unpickler = _UpstreamUnpickler  # type: ignore[attr-defined]
    module.load = lambda file, **kw: _UpstreamUnpickler(file, **kw).load()  # type: ignore[attr-defined]
    return module


def read_upstream(ckpt_path: str | Path) -> dict[str, Any]:
    """Unpickle an upstream checkpoint (trusted files only) and check its layout."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise CheckpointError(f"no upstream checkpoint file at {path}")
    warnings.warn(UNPICKLE_WARNING.format(path=path), UpstreamUnpickleWarning, stacklevel=2)
    try:
        ckpt = torch.load(
            path, map_location="cpu", weights_only=False, pickle_module=_pickle_module()
        )
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {exc}") from exc
    if not isinstance(ckpt, dict) or not {"model", "model_args"} <= set(ckpt):
        found = sorted(map(str, ckpt)) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{path} is not an upstream AstroPT checkpoint: expected a dict with 'model' and "
            f"'model_args' (as scripts/train_aion.py writes), found {found}"
        )
    return ckpt


def _modality(raw: Any) -> ModalityConfig:
    values = raw if isinstance(raw, dict) else vars(raw)
    missing = [name for name in ("name", "input_size") if name not in values]
    if missing:
        raise CheckpointError(f"upstream modality {values!r} lacks {missing}")
    return ModalityConfig(**{k: values[k] for k in _MODALITY_ARGS if k in values})


def upstream_config(model_args: dict[str, Any], state: dict[str, torch.Tensor]) -> GPTConfig:
    """Our :class:`GPTConfig` for upstream ``model_args`` (bias inferred from the weights)."""
    if model_args.get("backbone", "native") != "native":
        raise CheckpointError(
            f"upstream backbone {model_args['backbone']!r} (a Hugging Face LLM with PEFT) is not "
            "supported: only the native AstroPT transformer ('native') can be imported"
        )
    if model_args.get("norm_pix_loss"):
        raise CheckpointError("upstream norm_pix_loss=True is not supported by this trainer")
    values = {k: v for k, v in model_args.items() if k in _GPT_ARGS}
    values.setdefault("bias", any(key.endswith(".bias") for key in state))
    if "modalities" in model_args:
        values["modalities"] = [_modality(m) for m in model_args["modalities"]]
    try:
        config = GPTConfig(**values)
        config.validate()
    except (ModelConfigError, TypeError) as exc:
        raise CheckpointError(f"upstream model_args do not describe a valid model: {exc}") from exc
    return config


def merge_lora(
    state: dict[str, torch.Tensor], model_args: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """Fold unmerged loralib adapters into their base weights: ``W + (B @ A) * alpha / r``."""
    state = dict(state)
    for key in [k for k in state if k.endswith(".lora_A")]:
        prefix = key.removesuffix("lora_A")
        down, up = state.pop(key), state.pop(prefix + "lora_B")
        rank = int(model_args.get("lora_r") or down.shape[0])
        scale = float(model_args.get("lora_alpha", rank)) / rank
        base = prefix + "weight"
        if base not in state:
            raise CheckpointError(f"LoRA adapter {key} has no base weight {base}")
        state[base] = state[base] + (up.float() @ down.float()).to(state[base].dtype) * scale
    return state


def _rename_mask_token(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Upstream MAE checkpoints keep one learned mask embedding; ours is ``mask_token [C]``."""
    found = [k for k in state if k.split(".")[-1] == "mask_token"]
    if len(found) == 1 and found[0] != "mask_token":
        state = dict(state)
        state["mask_token"] = state.pop(found[0])
    if "mask_token" in state:
        state["mask_token"] = state["mask_token"].reshape(-1)
    return state


def import_upstream(ckpt_path: str | Path, out_dir: str | Path) -> Path:
    """Convert an upstream checkpoint into a checkpoint directory at ``out_dir``."""
    ckpt = read_upstream(ckpt_path)
    if not isinstance(ckpt["model"], dict) or not isinstance(ckpt["model_args"], dict):
        raise CheckpointError(f"{ckpt_path}: 'model' and 'model_args' must be dicts")
    state = strip_wrapper_prefixes(ckpt["model"])
    # A materialised causal-mask buffer (older nanoGPT) is not a weight.
    state = {k: v for k, v in state.items() if not (k.endswith("attn.bias") and v.dim() == 4)}
    state = _rename_mask_token(merge_lora(state, ckpt["model_args"]))
    config = upstream_config(ckpt["model_args"], state)
    model = GPT(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{ckpt_path}: the weights do not match the architecture in model_args: {exc}"
        ) from exc
    iter_num = ckpt.get("iter_num")
    meta = {
        "source": "upstream",
        "upstream_path": str(Path(ckpt_path).resolve()),
        "step": iter_num,
        "iter_num": iter_num,
        "best_val_loss": json_safe(ckpt.get("best_val_loss")),
        "upstream_config": json_safe(ckpt.get("config", {})),
        # The upstream run tokenised with aion-base; we cannot fingerprint weights we do not have.
        "codec": {
            "spec": UPSTREAM_CODEC,
            "source": "hub",
            "fingerprint": None,
            "trained": True,
            "verified": False,
        },
    }
    return save_checkpoint(out_dir, model, meta=json_safe(meta))
