"""AION image codec: resolving a codec spec, loading it, encoding and decoding.

A codec *spec* is one string:

- ``"default"``: aion-base from the Hugging Face hub when it can be had (cached or
  reachable), otherwise the codec shipped inside this package;
- ``"shipped"``: the small AION-architecture codec trained on mock galaxies that
  ships with the package (see ``docs/codec.md``);
- a hub id such as ``"polymathic-ai/aion-base"`` (``hub:`` prefix optional);
- a local directory in AION's layout (``codecs/image/config.json`` +
  ``codecs/image/model.safetensors``);
- ``"random:SEED"``: an *untrained*, randomly initialised small codec, for tests.

Every loaded codec carries a :class:`CodecInfo` (resolved spec + a fingerprint of
its weights) which travels with token batches, checkpoints and jobs so that tokens
of two codecs are never mixed.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astropt.constants import CROP, DEFAULT_BANDS, TOKENS_PER_IMAGE

HUB_DEFAULT = "polymathic-ai/aion-base"
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


class CodecError(ValueError):
    """A codec spec that cannot be resolved or loaded; the message says what to do."""


@dataclass(frozen=True)
class CodecInfo:
    spec: str  # what resolved: "shipped", "random:0", a hub id, or an absolute path
    source: str  # "hub" | "local" | "shipped" | "random"
    fingerprint: str  # sha256 prefix of the weights
    trained: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CodecHandle:
    """A loaded codec plus its identity; thread-safe encode/decode of flux cubes."""

    def __init__(self, codec: torch.nn.Module, info: CodecInfo, device: str | torch.device = "cpu"):
        self.codec = codec.to(device).eval()
        self.info = info
        self.device = torch.device(device)
        self._lock = threading.Lock()

    def encode(self, flux: np.ndarray | torch.Tensor, bands: tuple[str, ...] = DEFAULT_BANDS) -> torch.Tensor:
        """Flux ``[B, 4, H, W]`` (nanomaggies, H, W >= 96) -> tokens ``Long[B, 576]`` on CPU.

        The caller's array is never modified (AION preprocesses in place).
        """
        from aion.modalities import LegacySurveyImage

        x = torch.as_tensor(np.asarray(flux, dtype=np.float32) if isinstance(flux, np.ndarray) else flux)
        check_flux_shape(tuple(x.shape), bands)
        x = x.to(self.device, torch.float32, copy=True)
        if not torch.isfinite(x).all():
            raise ValueError("flux contains NaN or inf values; mask or fill them before encoding")
        with self._lock, torch.inference_mode():
            tokens = self.codec.encode(LegacySurveyImage(flux=x, bands=list(bands)))
        return tokens.long().cpu()

    def decode(self, tokens: torch.Tensor, bands: tuple[str, ...] = DEFAULT_BANDS) -> torch.Tensor:
        """Tokens ``Long[B, 576]`` -> flux ``Float[B, len(bands), 96, 96]`` on CPU."""
        tokens = torch.as_tensor(tokens)
        if tokens.ndim != 2 or tokens.shape[1] != TOKENS_PER_IMAGE:
            raise ValueError(f"expected tokens of shape [B, {TOKENS_PER_IMAGE}], got {list(tokens.shape)}")
        with self._lock, torch.inference_mode():
            image = self.codec.decode(tokens.to(self.device, torch.long), bands=list(bands))
        return image.flux.float().cpu()


def check_flux_shape(shape: tuple[int, ...], bands: tuple[str, ...]) -> None:
    if len(shape) != 4:
        raise ValueError(f"expected flux of shape [batch, bands, H, W], got {list(shape)}")
    if shape[1] != len(bands):
        raise ValueError(f"flux has {shape[1]} bands but {len(bands)} band names were given")
    if shape[2] < CROP or shape[3] < CROP:
        raise ValueError(
            f"images must be at least {CROP}x{CROP} pixels (the codec's centre crop), "
            f"got {shape[2]}x{shape[3]}"
        )


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
    codec._astropt_config = dict(config)  # type: ignore[attr-defined]
    return codec


def _hub_snapshot(repo_id: str) -> Path:
    """Fetch the codec files of a hub repo (or find them in the HF cache)."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    token = os.environ.get("HF_TOKEN") or None
    try:
        in_cache = all(
            isinstance(try_to_load_from_cache(repo_id, name), str) for name in (CONFIG_NAME, WEIGHTS_NAME)
        )
        local_only = in_cache or _hub_offline()
        if not local_only:
            _probe_hub()
        cfg = hf_hub_download(repo_id, CONFIG_NAME, token=token, local_files_only=local_only)
        hf_hub_download(repo_id, WEIGHTS_NAME, token=token, local_files_only=local_only)
    except Exception as exc:  # offline, unreachable, gated, missing: all mean "not here"
        raise CodecError(
            f"codec {repo_id!r} could not be had from the Hugging Face hub or its cache "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            "Alternatives: codec='shipped' (the packaged mock-trained codec), a local "
            "directory in AION's layout, or set HF_TOKEN / go online and retry."
        ) from exc
    return Path(cfg).parents[2]


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _probe_hub(timeout: float = 3.0) -> None:
    """Fail in seconds, not minutes of retries, when the hub cannot be reached."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"cannot reach {url.hostname}:{port} ({exc})") from exc


_CACHE: dict[tuple[str, str], CodecHandle] = {}
_CACHE_LOCK = threading.Lock()


def resolve(spec: str) -> tuple[str, str]:
    """Spec -> (source, target). Does not load weights (except probing the hub for 'default')."""
    spec = (spec or "default").strip()
    if spec == "default":
        try:
            _hub_snapshot(HUB_DEFAULT)
            return "hub", HUB_DEFAULT
        except CodecError:
            return "shipped", str(SHIPPED_DIR)
    if spec == "shipped":
        return "shipped", str(SHIPPED_DIR)
    if spec.startswith("random:"):
        seed = spec.split(":", 1)[1]
        if not seed.isdigit():
            raise CodecError(f"codec spec {spec!r}: expected random:SEED with an integer seed")
        return "random", seed
    if spec.startswith("hub:"):
        return "hub", spec[4:]
    path = Path(spec).expanduser()
    if path.exists():
        return "local", str(path.resolve())
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return "hub", spec
    raise CodecError(
        f"unknown codec spec {spec!r}: use 'default', 'shipped', a hub id like "
        f"'{HUB_DEFAULT}', an existing local directory, or 'random:SEED'"
    )


def load_codec(spec: str = "default", device: str | torch.device = "cpu") -> CodecHandle:
    """Load (and cache per process) the codec a spec names."""
    source, target = resolve(spec)
    key = (f"{source}:{target}", str(device))
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        if source == "random":
            codec = _with_config(random_codec(int(target)), SMALL_CODEC_ARGS)
            resolved, trained = f"random:{target}", False
        elif source == "shipped":
            if not (SHIPPED_DIR / WEIGHTS_NAME).is_file():
                raise CodecError(
                    "the shipped codec is missing from this installation "
                    f"({SHIPPED_DIR / WEIGHTS_NAME}); reinstall the package or use another codec spec"
                )
            codec, resolved, trained = _load_local(SHIPPED_DIR), "shipped", True
        elif source == "local":
            codec, resolved, trained = _load_local(Path(target)), target, True
        else:
            codec, resolved, trained = _load_local(_hub_snapshot(target)), target, True
        info = CodecInfo(resolved, source, fingerprint(codec), trained)
        handle = CodecHandle(codec, info, device)
        _CACHE[key] = handle
        return handle


def evict_codec(handle: CodecHandle) -> None:
    """Drop a handle from the per-process cache so its memory can be freed."""
    with _CACHE_LOCK:
        for key in [k for k, v in _CACHE.items() if v is handle]:
            del _CACHE[key]


def check_same_codec(expected: dict[str, Any] | CodecInfo, actual: CodecInfo, what: str) -> None:
    """Refuse to mix tokens of two codecs (fingerprints differ)."""
    exp_fp = expected.fingerprint if isinstance(expected, CodecInfo) else expected.get("fingerprint")
    exp_spec = expected.spec if isinstance(expected, CodecInfo) else expected.get("spec")
    if exp_fp != actual.fingerprint:
        raise CodecError(
            f"{what} was made with codec {exp_spec!r} (fingerprint {exp_fp}) but the codec "
            f"now loaded is {actual.spec!r} (fingerprint {actual.fingerprint}); tokens of two "
            f"codecs cannot be mixed. Load the original codec (codec={exp_spec!r}) or start a new run."
        )
