"""A backbone (an AstroPT GPT) with a task head, in one of three training modes.

- ``full``: every backbone parameter trains with the head;
- ``lora``: ``peft`` injects low-rank adapters into the blocks' Linear layers; the backbone is
  frozen and only the adapters and the head train;
- ``head``: the backbone is frozen and only the head trains.

:meth:`FinetuneModel.merged_backbone` gives a plain GPT (adapters folded into the weights by
``peft``'s ``merge_and_unload``) that is saved as an ordinary checkpoint.
"""

from __future__ import annotations

import copy
from typing import Any, cast

import torch
import torch.nn as nn

from astropt.finetune.config import LoraSettings, Mode
from astropt.finetune.head import TaskHead
from astropt.model import GPT

LORA_TARGETS = {
    "attention": r"attn\.c_attn|attn\.c_proj",
    "mlp": r"mlp\.c_fc|mlp\.c_proj",
    "all": r"attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj",
}


def _peft():  # -> the peft module
    try:
        import peft
    except ImportError as exc:
        raise RuntimeError(
            "mode 'lora' needs peft: pip install 'astropt-service[finetune]' "
            "(modes 'full' and 'head' do not)"
        ) from exc
    return peft


def lora_config(settings: LoraSettings):  # -> peft.LoraConfig
    LoraConfig = _peft().LoraConfig

    # A full-match regex: the blocks' layers only, never the encoders' or decoders' c_fc/c_proj.
    pattern = rf"transformer\.h\.\d+\.({LORA_TARGETS[settings.targets]})"
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=pattern,
        bias="none",
    )


class FinetuneModel(nn.Module):
    def __init__(
        self,
        backbone: GPT,
        head: TaskHead,
        mode: Mode,
        pooling: str = "mean",
        lora: LoraSettings | None = None,
    ):
        super().__init__()
        self.mode, self.pooling = mode, pooling
        if mode == "lora":
            self.backbone: nn.Module = _peft().get_peft_model(
                backbone, lora_config(lora or LoraSettings())
            )
        else:
            self.backbone = backbone
            backbone.requires_grad_(mode == "full")
        self.head = head

    @property
    def gpt(self) -> GPT:
        """The GPT inside (with adapters injected in lora mode)."""
        if self.mode == "lora":  # a peft PeftModel: its tuner's ``model`` is the GPT
            peft_model: Any = self.backbone
            return peft_model.base_model.model
        return cast(GPT, self.backbone)

    @property
    def trains_backbone(self) -> bool:
        return self.mode != "head"

    def features(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled hidden states ``[B, C]`` (through the adapters in lora mode)."""
        pooled = self.gpt.pooled(inputs, pooling=self.pooling)
        assert isinstance(pooled, torch.Tensor)
        return pooled

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.features(inputs))

    def train(self, mode: bool = True) -> FinetuneModel:
        super().train(mode)
        if not self.trains_backbone:
            self.backbone.eval()  # a frozen backbone never runs dropout
        return self

    def trainable(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    def merged_backbone(self) -> GPT:
        """A plain GPT with the adapters merged into its weights (this model is left as it is)."""
        if self.mode != "lora":
            return copy.deepcopy(self.gpt)
        peft_model: Any = copy.deepcopy(self.backbone)  # PeftModel delegates this to its tuner
        merged = peft_model.merge_and_unload()
        assert isinstance(merged, GPT)
        return merged
