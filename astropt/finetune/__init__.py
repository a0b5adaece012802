"""Fine-tuning: a task head (regression or classification) on a pretrained AstroPT, trained in
``full``, ``lora`` (``peft`` adapters) or ``head`` mode, scored against a ridge probe and a
constant predictor. ``finetune(FinetuneConfig(...))`` runs one; see docs/finetune.md."""

from astropt.finetune.config import FinetuneConfig, FinetuneSettings, LoraSettings
from astropt.finetune.labels import LabelError

__all__ = ["FinetuneConfig", "FinetuneSettings", "LabelError", "LoraSettings", "finetune"]


def finetune(*args, **kwargs):  # noqa: ANN002, ANN003 (the loop imports torch and peft lazily)
    from astropt.finetune.train import finetune as run

    return run(*args, **kwargs)
