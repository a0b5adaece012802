"""What GET /datasets answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

DatasetKind = Literal["tokens", "token_cache", "mock"]


class DatasetOut(BaseModel):
    id: str = Field(description="tokens-<job id>, cache-<name> or mock-<name>.")
    kind: DatasetKind = Field(
        description="tokens: a tokenise job's token data set; token_cache: the "
        "tokens a training run cached for a finite source; mock: a generated mock set."
    )
    path: str = Field(description="Where it lies on the service's machine.")
    bytes: int = Field(description="Size on disk.")
    n_galaxies: int | None = None
    source: dict[str, Any] | None = Field(
        None, description="What it was made from (its manifest's source)."
    )
    codec: str | None = Field(
        None, description="The codec fingerprint of its tokens (none for mock sets)."
    )
    job_id: str | None = Field(None, description="The job that made it (tokens), if any.")
    complete: bool = Field(
        description="False while a tokenise job is still writing it (no manifest yet)."
    )
    modified_at: datetime
    last_used_at: datetime | None = Field(
        None, description="When a job last named it (data.source tokens)."
    )


class DatasetList(BaseModel):
    items: list[DatasetOut]
    total_bytes: int
    budget_bytes: int | None = Field(
        description="ASTROPT_DISK_BUDGET_GB in bytes; null: no budget."
    )
    used_bytes: int = Field(description="What the whole data directory holds (runs included).")
