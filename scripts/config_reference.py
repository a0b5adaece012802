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

## Warm start: `init_from`

`init_from` starts a run from a checkpoint's weights instead of random ones: a checkpoint
directory (`runs/x/checkpoints/best`, an `astropt import-upstream` output) or `shipped`, the
model packaged with astropt (2 layers, 64 wide, trained on the mock with the shipped codec).
Over HTTP (`POST /jobs`) it is `"shipped"`, `{"job": ID, "checkpoint": "best"}` (a job of the
service; `best`, `last` or `step_NNNNNN`) or `{"path": DIR}` inside the data roots; the service
resolves it to a directory at submission (`init_from_dir` in the stored spec).

- **Shape.** The model is the checkpoint's. `model` fields a config leaves unset are taken from
  it (`tokeniser`, `n_layer`, `n_head`, `n_embd`, `block_size`, `bias`, `attn_type`,
  `objective`, `vocab_size`; `patch_size`, `patch_encoder`, `patch_order` for patch models),
  and so is `codec` when unset. A field that is set and differs is refused before anything
  runs — a 422 over HTTP — naming every differing field, e.g. `model.n_layer is 1 here but 2 in
  the checkpoint; model.n_embd is 32 here but 64 in the checkpoint`. `dropout` and
  `mae_mask_ratio` may differ (they are training settings).
- **Codec.** At the start the codec's fingerprint must be the checkpoint's (the check a resume
  makes): tokens of two codecs are never mixed.
- **What starts afresh.** The optimiser, the learning-rate schedule (warm-up included) and the
  step count (step 0), and the data order (`seed`). The step-0 evaluation is then the
  checkpoint's own validation loss: ~0.65 from `shipped` on the mock, where random weights give
  ln 10,000 = 9.21.
- **Resume.** A run that has its own `checkpoints/last` resumes from it (a killed or cancelled
  job, `--set max_iters=...`); the `init_from` checkpoint is not read again and may since have
  been deleted. `--fresh` starts over from `init_from`.
- **Record.** `init_from` in each checkpoint's `config.json` (and in `on_start`'s info): the
  spec, the resolved path, its step and best validation loss, the sha256 of its weights and
  its codec.

```bash
astropt train --set init_from=shipped --set max_iters=200 --set optim.learning_rate=3e-4 --out runs/warm
curl -X POST localhost:8000/jobs -H "X-API-Key: $KEY" -H 'Content-Type: application/json' \\
    -d '{"init_from": "shipped", "max_iters": 200, "optim": {"learning_rate": 3e-4}, "device": "cpu"}'
curl -X POST localhost:8000/jobs -H "X-API-Key: $KEY" -H 'Content-Type: application/json' \\
    -d '{"init_from": {"job": "'$JOB'", "checkpoint": "best"}, "max_iters": 2000}'
```

## Fields
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
        rows.append(
            f"| `{prefix}{name}` | {kind.replace('|', 'or')} | {_default(field)} | {desc} |"
        )
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
