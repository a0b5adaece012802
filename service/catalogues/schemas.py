"""API schemas of catalogues, probes and similarity search (separate from the ORM models)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel

from service.http.schemas import ErrorOut, ValidationErrorOut

JOB_ID = r"^[0-9a-f]{1,32}$"


class CatalogueLinks(BaseModel):
    self: str
    parquet: str
    probe: str
    outliers: str
    map_png: str


class CatalogueOut(BaseModel):
    job_id: str
    count: int = Field(description="Rows (galaxies) in the catalogue.")
    embedding_dim: int
    created_at: datetime
    finished_at: datetime | None = None
    size_bytes: int = Field(description="Size of catalogue.parquet.")
    manifest: dict[str, Any] = Field(
        description="Model, codec, data source, pooling, layer, columns."
    )
    links: CatalogueLinks


class CatalogueList(BaseModel):
    items: list[CatalogueOut]
    total: int
    limit: int
    offset: int


class ProbeRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "labels": ["mag_r", "g_r", "bulge_fraction"],
                    "folds": 5,
                    "alpha": 100.0,
                    "bootstrap": 200,
                }
            ]
        },
    )
    labels: list[str] = Field(
        min_length=1,
        description="Columns of the catalogue (ASTROPT_MAX_PROBE_LABELS): "
        "numbers get a ridge probe (R²), text and booleans a logistic probe "
        "(accuracy, beside the commonest class's).",
    )
    categorical: list[str] = Field(
        [],
        max_length=64,
        description="Labels among `labels` whose numbers are "
        "class codes (e.g. a morphology type 0-4): logistic probe.",
    )
    folds: int = Field(
        5, ge=2, description="k of the k-fold cross-validation (ASTROPT_MAX_PROBE_FOLDS)."
    )
    alpha: float = Field(100.0, gt=0, le=1e8, description="Ridge lambda (logistic: C = 1 / alpha).")
    bootstrap: int = Field(
        0, ge=0, description="Bootstrap draws for a 95% interval (ASTROPT_MAX_PROBE_BOOTSTRAP)."
    )
    seed: int = Field(
        0, ge=0, le=2**32 - 1, description="Seed of the folds, the bootstrap and the shuffle."
    )
    aperture: bool = Field(True, description="Also probe the aperture photometry (the baseline).")
    shuffled: bool = Field(True, description="Also probe shuffled labels (the control: R² ~ 0).")
    label_table: str | None = Field(
        None,
        max_length=4096,
        description="A CSV or Parquet file inside the "
        "data roots with an object_id column: its other columns (numbers, text, "
        "booleans) are joined onto the catalogue by object id and may be "
        "named in labels.",
    )


class SearchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"job_id": "0123abcd", "object_id": "mock-s777-00000042", "k": 10}]
        },
    )
    job_id: str = Field(pattern=JOB_ID, description="The embed job whose catalogue is searched.")
    object_id: str = Field(
        min_length=1, max_length=1024, description="An object of that catalogue."
    )
    k: int = Field(
        10,
        ge=1,
        description="Neighbours to return, the object itself first (ASTROPT_MAX_SEARCH_K).",
    )


class Neighbour(BaseModel):
    rank: int
    object_id: str
    score: float = Field(description="Cosine similarity of the embeddings (1: the same direction).")
    columns: dict[str, Any] = Field(description="The object's scalar catalogue columns.")


class SearchOut(BaseModel):
    job_id: str
    query: dict[str, Any] = Field(description="{object_id} or {upload: file name, bands}.")
    k: int
    neighbours: list[Neighbour]


class Outlier(BaseModel):
    rank: int
    object_id: str
    outlier_score: float = Field(
        description="The anomaly score of the method (larger: more unusual; surprisal_excess, "
        "the default: nats per token above its neighbours' median; surprisal_knn: a rank in (0, 1])."
    )
    columns: dict[str, Any]


class OutliersOut(BaseModel):
    job_id: str
    k: int
    method: str = Field(description="The anomaly score ranked by (docs/science.md#anomaly-scores).")
    items: list[Outlier]


class UploadOrFieldError(RootModel[ErrorOut | ValidationErrorOut]):
    """POST /search 422: an unusable image or form ({detail: str}), or a field out of bounds
    ({detail: [issues]})."""
