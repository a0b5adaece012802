"""Print the training-configuration reference (Markdown) from the TrainConfig model.

    python scripts/config_reference.py > docs/training-config.md

A test checks that the committed file matches, so the reference never drifts.
"""

from __future__ import annotations

import inspect
import sys
import typing
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
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, tuple):
        value = list(value)
    return f"`{value!r}`" if value is not None else "`None`"


def _section(annotation: Any) -> type[BaseModel] | None:
    """The model of a section field (``Settings`` or an optional ``Settings | None``)."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _rows(model: type[BaseModel], prefix: str = "") -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if _section(annotation) is not None:
            continue
        kind = str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")
        desc = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{prefix}{name}` | {kind.replace('|', 'or')} | {_default(field)} | {desc} |")
    return rows


def render() -> str:
    out = [HEADER, "| key | type | default | meaning |", "|---|---|---|---|"]
    out += _rows(TrainConfig)
    for name, field in TrainConfig.model_fields.items():
        annotation = _section(field.annotation)
        if annotation is not None:
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
