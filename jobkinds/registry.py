"""Every job kind, by name: the one table the service and the worker dispatch on.

Adding a kind: a module in ``jobkinds/kinds/`` with a :class:`~jobkinds.base.JobKind`
subclass, and one line here.
"""

from __future__ import annotations

from jobkinds.base import JobKind
from jobkinds.kinds.embed import EmbedKind
from jobkinds.kinds.finetune import FinetuneKind
from jobkinds.kinds.tokenise import TokeniseKind
from jobkinds.kinds.train import TrainKind

KINDS: dict[str, JobKind] = {
    "train": TrainKind(),
    "finetune": FinetuneKind(),
    "embed": EmbedKind(),
    "tokenise": TokeniseKind(),
}


def kind_of(name: str | None) -> JobKind:
    """The kind of a stored job (``None``: a body from before kinds existed is a train job)."""
    return KINDS[name or "train"]
