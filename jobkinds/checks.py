"""What a job spec may ask of this service: paths inside its data roots, bounded numbers.

The CLI (a person on their own machine) may point a run anywhere; a job submitted over HTTP
may read only under the data directory or the configured read-only roots, write only under
the data directory, and ask for at most the limits in the settings. Every refusal is a 422
that names the field and the limit (or the allowed roots).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from astropt.codec import CodecError, resolve
from astropt.model_budget import estimate_params, estimate_train_bytes
from jobkinds.paths import HUB_ID, path_problem, roots_text
from jobkinds.spec import JobSpec
from state.errors import SpecInvalid
from state.settings import Settings

MAX_SEED = 2**32 - 1
# Each bounded field of a job spec and the setting that bounds it.
LIMITS: dict[str, str] = {
    "max_iters": "max_iters_limit",
    "batch_size": "max_batch_size",
    "grad_accum": "max_grad_accum",
    "data.n_mock": "max_n_mock",
    "eval_iters": "max_eval_iters",
    "num_threads": "max_num_threads",
    "model.block_size": "max_block_size",
    "model.n_layer": "max_n_layer",
    "model.n_embd": "max_n_embd",
    "data.shuffle_buffer": "max_shuffle_buffer",
    "optim.learning_rate": "max_learning_rate",
    "optim.min_lr": "max_learning_rate",
    "optim.weight_decay": "max_weight_decay",
    "optim.grad_clip": "max_grad_clip",
    # step counts: none may exceed the service's max_iters limit
    "eval_interval": "max_iters_limit",
    "log_interval": "max_iters_limit",
    "checkpoint_interval": "max_iters_limit",
    "optim.warmup_iters": "max_iters_limit",
    "optim.lr_decay_iters": "max_iters_limit",
    # the live probe embeds n_galaxies at each of its evaluations
    "live_probe.n_galaxies": "max_live_probe_galaxies",
    "live_probe.every": "max_iters_limit",
}


def check_spec(spec: JobSpec, settings: Settings) -> None:
    """Raise :class:`SpecInvalid` for anything this service will not run."""
    _check_numbers(spec, settings)
    _check_memory(spec, settings)
    _check_paths(spec, settings)
    _check_codec(spec.codec, settings)


def _value(spec: JobSpec, dotted: str) -> Any:
    node: Any = spec
    for part in dotted.split("."):
        if node is None:  # an optional section left out (live_probe)
            return None
        node = getattr(node, part)
    return node


def _setting_name(setting: str) -> str:
    return f"ASTROPT_{setting.upper()}"


def _limit(spec: JobSpec, field: str, setting: str, settings: Settings) -> None:
    value, limit = _value(spec, field), getattr(settings, setting)
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecInvalid(field, f"{field} must be a finite number")
    if value > limit:
        raise SpecInvalid(
            field,
            f"{field} ({value:g}) exceeds this service's limit of {limit:g} "
            f"(setting {_setting_name(setting)})",
        )


def _check_numbers(spec: JobSpec, settings: Settings) -> None:
    for field, setting in LIMITS.items():
        _limit(spec, field, setting, settings)
    for field in ("seed", "data.mock_seed"):
        value = _value(spec, field)
        if not 0 <= value <= MAX_SEED:
            raise SpecInvalid(field, f"{field} ({value}) must be between 0 and {MAX_SEED}")
    tokens = spec.batch_size * spec.grad_accum * 575
    if tokens > settings.max_tokens_per_step:
        raise SpecInvalid(
            "batch_size",
            f"batch_size x grad_accum x 575 tokens ({tokens}) exceeds this "
            f"service's limit of {settings.max_tokens_per_step} tokens per step "
            "(setting ASTROPT_MAX_TOKENS_PER_STEP)",
        )
    params = estimate_params(spec.model)
    if params > settings.max_model_params:
        raise SpecInvalid(
            "model",
            f"the model would have about {params:,} parameters; this service's "
            f"limit is {settings.max_model_params:,} (setting ASTROPT_MAX_MODEL_PARAMS)",
        )


def _check_memory(spec: JobSpec, settings: Settings) -> None:
    needed_mb = estimate_train_bytes(spec.model, spec.batch_size) / 2**20
    if needed_mb > settings.max_train_memory_mb:
        raise SpecInvalid(
            "batch_size",
            f"this job would need about {needed_mb / 1024:.1f} GiB per training "
            f"process (model {estimate_params(spec.model):,} parameters, batch_size {spec.batch_size} "
            f"x {spec.model.n_positions} tokens); this service's memory budget is "
            f"{settings.max_train_memory_mb / 1024:.1f} GiB (setting ASTROPT_MAX_TRAIN_MEMORY_MB): "
            "lower batch_size (use grad_accum for the same effective batch) or the model size",
        )


def inside(path: Path, roots: list[Path]) -> bool:
    """Whether ``path`` lies inside one of ``roots``; a path no file system could hold (a NUL
    byte, an over-long name: jobkinds.paths) lies nowhere, rather than raising."""
    if path_problem(str(path)) is not None:
        return False
    resolved = path.expanduser().resolve()
    return any(resolved.is_relative_to(root) for root in roots)


def _check_paths(spec: JobSpec, settings: Settings) -> None:
    data = spec.data
    if data.source == "hf" and not HUB_ID.match(data.hf_dataset):
        raise SpecInvalid(
            "data.hf_dataset",
            f"data.hf_dataset ({data.hf_dataset!r}) must be a Hugging "
            "Face dataset id like 'owner/name'; for files on this machine use "
            "data.source 'local' with a data.path inside the allowed roots",
        )
    if not data.path:
        return
    path = Path(data.path)
    if data.source == "mock":  # the mock is generated (written) at data.path
        writable = [settings.data_dir.resolve()]
        if not inside(path, writable):
            raise SpecInvalid(
                "data.path",
                f"data.path ({data.path}) is written for a mock data set and "
                f"must be inside the service's data directory: {roots_text(writable)}",
            )
        return
    if not inside(path, settings.readable_roots):
        raise SpecInvalid(
            "data.path",
            f"data.path ({data.path}) is outside the allowed data roots: "
            f"{roots_text(settings.readable_roots)} (setting ASTROPT_DATA_ROOTS)",
        )


def _check_codec(codec: str, settings: Settings) -> None:
    if codec in ("default", "shipped"):
        return
    try:
        source, target = resolve(codec)
    except CodecError as exc:
        raise SpecInvalid("codec", str(exc)) from exc
    if source == "random" and int(target) > MAX_SEED:
        raise SpecInvalid("codec", f"codec {codec!r}: the seed must be at most {MAX_SEED}")
    if source == "local" and not inside(Path(target), settings.readable_roots):
        raise SpecInvalid(
            "codec",
            f"codec directory {codec} is outside the allowed data roots: "
            f"{roots_text(settings.readable_roots)} (setting ASTROPT_DATA_ROOTS)",
        )
    if source == "hub" and not HUB_ID.match(target):
        raise SpecInvalid(
            "codec", f"codec {codec!r} is not a Hugging Face model id like 'owner/name'"
        )
