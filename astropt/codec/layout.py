"""AION's on-disk codec layout (``codecs/image/config.json`` + ``model.safetensors``): building,
saving and loading a codec module, and the fingerprint of its weights."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from astropt.codec.info import CodecError

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "shipped_codec"
CONFIG_NAME = "codecs/image/config.json"
WEIGHTS_NAME = "codecs/image/model.safetensors"
AION_RANGE_COMPRESSION = 0.01  # aion.codecs.ImageCodec's default range_compression_factor
SMALL_CODEC_ARGS: dict[str, Any] = {
    "quantizer_levels": [8, 5, 5, 5, 5],
    "hidden_dims": 64,
    "multisurvey_projection_dims": 54,
    "n_compressions": 2,
    "num_consecutive": 2,
    "embedding_dim": 5,
}


def fingerprint(module: torch.nn.Module) -> str:
    """Stable hash of a module's parameters and buffers (names, dtypes, shapes, values).

    A range compression other than AION's default is hashed too: the same weights behind
    another compression make other tokens. (The default adds nothing, so fingerprints of
    codecs with AION's preprocessing are unchanged.)
    """
    h = hashlib.sha256()
    scale = getattr(module, "range_compression_factor", AION_RANGE_COMPRESSION)
    if scale != AION_RANGE_COMPRESSION:
        h.update(f"range_compression_factor|{float(scale)!r}".encode())
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def build_codec(config: dict[str, Any]) -> torch.nn.Module:
    from aion.codecs import ImageCodec

    try:
        return _with_config(ImageCodec(**config), config)
    except TypeError as exc:
        raise CodecError(f"codec config is not a valid AION ImageCodec config: {exc}") from exc


def random_codec(seed: int = 0, **overrides: Any) -> torch.nn.Module:
    """An untrained small codec of AION's architecture (deterministic per seed)."""
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        return build_codec({**SMALL_CODEC_ARGS, **overrides})
    finally:
        torch.random.set_rng_state(gen_state)


def save_codec(codec: torch.nn.Module, out_dir: str | Path) -> Path:
    """Write a codec in AION's on-disk layout (readable by :func:`load_codec`)."""
    from safetensors.torch import save_model

    out = Path(out_dir)
    (out / "codecs" / "image").mkdir(parents=True, exist_ok=True)
    config = codec_config(codec)
    tmp = out / (WEIGHTS_NAME + ".tmp")
    save_model(codec, str(tmp))
    tmp.replace(out / WEIGHTS_NAME)
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return out


def codec_config(codec: torch.nn.Module) -> dict[str, Any]:
    cfg = getattr(codec, "_astropt_config", None)
    if cfg is None:
        raise CodecError("codec has no recorded config; build it with build_codec()/random_codec()")
    return dict(cfg)


def _load_local(directory: Path) -> torch.nn.Module:
    # AION 0.0.2's from_pretrained cannot read a local directory (REFERENCE.md), so we
    # build the module from config.json and load the safetensors weights into it.
    from safetensors.torch import load_model

    cfg_path, weights = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    if not cfg_path.is_file() or not weights.is_file():
        raise CodecError(
            f"{directory} is not an AION codec directory: expected {CONFIG_NAME} and {WEIGHTS_NAME}"
        )
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise CodecError(f"{cfg_path} is not valid JSON: {exc}") from exc
    codec = _with_config(build_codec(config), config)
    try:
        load_model(codec, str(weights), strict=True)
    except Exception as exc:  # safetensors raises several types for bad files
        raise CodecError(f"cannot load codec weights {weights}: {exc}") from exc
    return codec


def _with_config(codec: torch.nn.Module, config: dict[str, Any]) -> torch.nn.Module:
    # torch types Module.__setattr__ as Tensor | Module only; any value is fine at run time
    codec._astropt_config = dict(config)  # type: ignore[assignment]
    return codec
