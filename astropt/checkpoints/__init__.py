"""Checkpoint directories (safetensors + JSON) and the one-off import of upstream AstroPT ones."""

from astropt.checkpoints.io import (
    CONFIG_FILE,
    FORMAT,
    TRAINER_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    json_safe,
    load_checkpoint,
    load_model,
    load_trainer_state,
    read_meta,
    save_checkpoint,
    strip_wrapper_prefixes,
    unwrap_model,
)
from astropt.checkpoints.upstream import import_upstream

__all__ = [
    "CONFIG_FILE",
    "FORMAT",
    "TRAINER_FILE",
    "WEIGHTS_FILE",
    "CheckpointError",
    "import_upstream",
    "json_safe",
    "load_checkpoint",
    "load_model",
    "load_trainer_state",
    "read_meta",
    "save_checkpoint",
    "strip_wrapper_prefixes",
    "unwrap_model",
]
