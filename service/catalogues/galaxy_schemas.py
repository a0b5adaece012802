"""API schemas of a catalogue's galaxies: one object's page and galleries (image grids)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

GalleryKind = Literal["outliers", "neighbours", "worst"]


class AnomalyRank(BaseModel):
    score: float | None = Field(
        description="The method's score of this object (larger: more unusual)."
    )
    rank: int = Field(description="1 = the most unusual object of the catalogue by this method.")
    of: int = Field(description="Objects ranked.")


class NeighbourOut(BaseModel):
    rank: int
    object_id: str
    score: float = Field(description="Cosine similarity of the embeddings.")
    cutout: str = Field(description="URL of its cut-out PNG.")
    page: str = Field(description="URL of its object JSON.")


class ObjectOut(BaseModel):
    job_id: str
    object_id: str
    row: int = Field(description="The object's row in catalogue.parquet (0-based).")
    columns: dict[str, Any] = Field(description="Its scalar catalogue columns (NaN: null).")
    anomaly: dict[str, AnomalyRank] = Field(
        description="Score and rank per anomaly method: the default, "
        "surprisal where the catalogue has it, and knn_cosine."
    )
    default_method: str
    neighbours: list[NeighbourOut] = Field(
        description="The k nearest other objects, most similar first."
    )
    cutout: str = Field(
        description="URL of the object's cut-out PNG (header X-Image-Origin: pixels, or "
        "codec-decoded where only the codec tokens could be read)."
    )
    image_source: str = Field(
        description="Where the cut-out comes from: the catalogue's data source kind."
    )


class GalleryItem(BaseModel):
    rank: int
    object_id: str
    score: float | None = Field(
        description="outliers: the anomaly score; neighbours: cosine similarity; "
        "worst: |prediction - truth|."
    )
    caption: str
    cutout: str
    page: str


class GalleryOut(BaseModel):
    job_id: str
    kind: GalleryKind
    title: str
    items: list[GalleryItem]
