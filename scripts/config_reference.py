"""Print the training-configuration reference (Markdown) from the TrainConfig model.

    python scripts/config_reference.py > docs/training-config.md

A test checks that the committed file matches, so the reference never drifts.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from pydantic import BaseModel

from astropt.config import TrainConfig

HEADER = """# Training configuration reference

Every training run — `astropt train`, `POST /jobs`, the Python API — is described by one
`TrainConfig`. Unknown keys are errors. In YAML, sections nest (`model:`, `data:`, `optim:`);
on the command line use dotted keys: `astropt train --set optim.learning_rate=3e-4`.
Example files: `astropt/configs/mock-small.yaml` (CPU, embedded mock),
`astropt/configs/gpu-aion-base.yaml` (the seed's recipe on a GPU with aion-base tokens).

Generated from `astropt/config.py` by `scripts/config_reference.py`.
"""


def _default(field: Any) -> str:
    if field.default_factory is not None:
        return "(section)"
    value = field.default
    if isinstance(value, tuple):
        value = list(value)
    return f"`{value!r}`" if value is not None else "`None`"


def _rows(model: type[BaseModel], prefix: str = "") -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            continue
        kind = str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")
        desc = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{prefix}{name}` | {kind.replace('|', 'or')} | {_default(field)} | {desc} |")
    return rows


def render() -> str:
    out = [HEADER, "| key | type | default | meaning |", "|---|---|---|---|"]
    out += _rows(TrainConfig)
    for name, field in TrainConfig.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out += [
                "",
                f"## `{name}`",
                "",
                inspect.cleandoc(annotation.__doc__ or ""),
                "",
                "| key | type | default | meaning |",
                "|---|---|---|---|",
            ]
            out += _rows(annotation, f"{name}.")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
