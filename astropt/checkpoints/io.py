"""Checkpoint directories: ``model.safetensors`` + ``config.json`` (+ ``trainer_state.pt``).

No pickle: weights are safetensors, metadata is JSON and the trainer state (optimiser, scaler,
RNG tensors, numbers) is a ``torch.save`` file that must load with ``weights_only=True``.
A checkpoint is written into a sibling temporary directory and renamed into place, so a
directory under the final name is always complete.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file, save_model

from astropt.model import GPT, GPTConfig, ModelConfigError
from astropt.run_dir import CONFIG_FILE, WEIGHTS_FILE, staged_directory

FORMAT = "astropt-checkpoint"
FORMAT_VERSION = 1
TRAINER_FILE = "trainer_state.pt"
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # torch.compile and DistributedDataParallel


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, corrupt or not in this project's format."""


def unwrap_model(model: torch.nn.Module) -> GPT:
    """The plain GPT inside a compiled and/or DDP-wrapped model."""
    while not isinstance(model, GPT):
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if inner is None:
            raise CheckpointError(f"expected an astropt GPT model, got {type(model).__name__}")
        model = inner
    return model


def strip_wrapper_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    cleaned = {}
    for key, value in state.items():
        while key.startswith(_WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        cleaned[key] = value
    return cleaned


def json_safe(value: Any) -> Any:
    """A strict-JSON copy: non-finite floats become null, tensors/numpy scalars numbers,
    tuples lists, paths and other objects their ``str``."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value
    if hasattr(value, "tolist"):  # tensors, numpy arrays and numpy scalars
        return json_safe(value.tolist())
    return str(value)


def _meta_json(model: GPT, meta: dict[str, Any]) -> str:
    reserved = {"format", "format_version", "model_args"} & set(meta)
    if reserved:
        raise CheckpointError(f"meta must not set the reserved keys {sorted(reserved)}")
    try:
        body = json.dumps(meta, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint meta must be JSON-serialisable: {exc}") from exc
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_args": model.config.to_dict(),
    }
    record.update(json_safe(json.loads(body)))
    return json.dumps(record, indent=2, allow_nan=False) + "\n"


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    *,
    meta: dict[str, Any],
    trainer_state: dict[str, Any] | None = None,
    extra_modules: dict[str, torch.nn.Module] | None = None,
    extra_tensors: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Path:
    """Write ``path/`` atomically and return it; an existing checkpoint there is replaced.

    ``extra_modules``: more safetensors files in the same directory (file name -> module),
    e.g. a fine-tuned model's task head; ``extra_tensors``: the same for named tensors (file
    name -> tensors), e.g. a fine-tune's adapters for its resume. Written and swapped in with
    the weights."""
    path = Path(path)
    gpt = unwrap_model(model)
    config_text = _meta_json(gpt, meta)  # fail before touching the disk
    with staged_directory(path) as staging:
        weights = staging / WEIGHTS_FILE
        save_model(gpt, str(weights), metadata={"format": FORMAT})
        _fsync_file(weights)
        extras: dict[str, torch.nn.Module | dict[str, torch.Tensor]] = {
            **(extra_modules or {}),
            **(extra_tensors or {}),
        }
        for name, content in extras.items():
            if Path(name).name != name or not name.endswith(".safetensors") or name == WEIGHTS_FILE:
                raise CheckpointError(
                    f"extra module file {name!r} must be a plain *.safetensors name"
                )
            if isinstance(content, torch.nn.Module):
                save_model(content, str(staging / name), metadata={"format": FORMAT})
            else:
                tensors = {k: v.detach().cpu().contiguous() for k, v in content.items()}
                save_file(tensors, str(staging / name), metadata={"format": FORMAT})
            _fsync_file(staging / name)
        if trainer_state is not None:
            _save_trainer_state(trainer_state, staging / TRAINER_FILE)
        (staging / CONFIG_FILE).write_text(config_text)
        _fsync_file(staging / CONFIG_FILE)
    return path


def _save_trainer_state(trainer_state: dict[str, Any], trainer_file: Path) -> None:
    """Save, then prove it loads with ``weights_only=True`` (resume must never need pickle)."""
    try:
        torch.save(trainer_state, trainer_file)
        torch.load(trainer_file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            "trainer_state holds objects that torch.load(weights_only=True) refuses; keep it to "
            f"tensors, numbers, strings, lists and dicts: {exc}"
        ) from exc
    _fsync_file(trainer_file)


def _checkpoint_dir(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        hint = ""
        if path.with_name(path.name + ".old").is_dir():
            hint = f"; a save was interrupted, the previous checkpoint is in {path.name}.old"
        raise CheckpointError(f"no checkpoint directory at {path}{hint}")
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    """``config.json`` of a checkpoint, checked for format and version."""
    config_file = _checkpoint_dir(path) / CONFIG_FILE
    if not config_file.is_file():
        raise CheckpointError(f"{path} is not a complete checkpoint: {CONFIG_FILE} is missing")
    try:
        meta = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_file} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{config_file} is not an astropt checkpoint (expected format {FORMAT!r}); "
            "upstream AstroPT .pt files can be converted with `astropt import-upstream`"
        )
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{config_file} has format_version {version!r}; this astropt reads up to "
            f"{FORMAT_VERSION}: upgrade astropt"
        )
    if not isinstance(meta.get("model_args"), dict):
        raise CheckpointError(f"{config_file} has no model_args")
    return meta


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[GPT, dict]:
    """The model (in eval mode, on ``device``) and the checkpoint's ``config.json``."""
    meta = read_meta(path)
    try:
        model = GPT(GPTConfig.from_dict(meta["model_args"]))
    except (ModelConfigError, TypeError) as exc:
        raise CheckpointError(f"{path}: model_args do not describe a valid model: {exc}") from exc
    weights = Path(path) / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{path} is not a complete checkpoint: {WEIGHTS_FILE} is missing")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights} is corrupt or not a safetensors file: {exc}") from exc
    try:
        model.load_state_dict(strip_wrapper_prefixes(state), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{weights} does not match model_args in {CONFIG_FILE}: {exc}"
        ) from exc
    return model.to(device).eval(), meta


def load_model(path: str | Path, device: str | torch.device = "cpu") -> GPT:
    """A trained model ready for inference (eval mode)."""
    return load_checkpoint(path, device)[0]


def load_trainer_state(path: str | Path) -> dict[str, Any] | None:
    """The saved optimiser/scaler/RNG state, or ``None`` when the checkpoint has none."""
    trainer_file = _checkpoint_dir(path) / TRAINER_FILE
    if not trainer_file.is_file():
        return None
    try:
        return torch.load(trainer_file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{trainer_file} cannot be loaded safely: {exc}") from exc
